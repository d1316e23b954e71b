"""Latent-space maths: traversal, lerp/slerp, arithmetic, class means, attribute vectors, prior density."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vae_core import latent

# -- traversal -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5,), (1, 5)])
def test_traverse_changes_only_the_chosen_dimension(shape):
    z = torch.arange(5, dtype=torch.float32).reshape(shape) + 0.5
    values = [-2.0, 0.0, 1.5, 7.0]
    out = latent.traverse(z, 3, values)
    assert out.shape == (4, 5)
    assert torch.equal(out[:, 3], torch.tensor(values))
    others = [0, 1, 2, 4]
    assert torch.equal(out[:, others], z.reshape(1, -1)[:, others].expand(4, -1))
    assert torch.equal(z.reshape(-1), torch.arange(5, dtype=torch.float32) + 0.5)  # input untouched


def test_traverse_accepts_a_tensor_of_values_and_keeps_dtype():
    z = torch.zeros(3, dtype=torch.float64)
    out = latent.traverse(z, 0, torch.linspace(-1, 1, 7))
    assert out.dtype == torch.float64 and out.shape == (7, 3)
    assert torch.allclose(out[:, 0], torch.linspace(-1, 1, 7, dtype=torch.float64), atol=1e-7)
    assert torch.equal(out[:, 1:], torch.zeros(7, 2, dtype=torch.float64))


def test_traversal_grid_rows_sweep_one_dimension_each():
    z = torch.tensor([0.3, -0.2, 1.1, 0.0])
    dims, span, steps = [2, 0, 3], 2.5, 5
    grid = latent.traversal_grid(z, dims, span=span, steps=steps)
    assert grid.shape == (len(dims) * steps, 4)
    sweep = torch.linspace(-span, span, steps)
    for i, d in enumerate(dims):
        block = grid[i * steps:(i + 1) * steps]
        assert torch.allclose(block[:, d], sweep)
        rest = [j for j in range(4) if j != d]
        assert torch.equal(block[:, rest], z[rest].expand(steps, -1))


# -- interpolation -------------------------------------------------------------------------------


def _pair(dim=6, seed=0, norm=None):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(dim, generator=g), torch.randn(dim, generator=g)
    if norm is not None:
        a, b = a / a.norm() * norm, b / b.norm() * norm
    return a, b


@pytest.mark.parametrize("interpolate", [latent.lerp, latent.slerp], ids=["lerp", "slerp"])
@pytest.mark.parametrize("steps", [2, 3, 10])
def test_interpolation_endpoints_and_length(interpolate, steps):
    a, b = _pair()
    path = interpolate(a, b, steps)
    assert path.shape == (steps, 6)
    assert torch.equal(path[0], a)
    assert torch.equal(path[-1], b)


def test_lerp_points_are_evenly_spaced_on_the_segment():
    a, b = _pair()
    path = latent.lerp(a, b, 5)
    assert torch.allclose(path[2], (a + b) / 2, atol=1e-6)
    steps = path[1:] - path[:-1]
    assert torch.allclose(steps, ((b - a) / 4).expand(4, -1), atol=1e-6)


def test_slerp_keeps_norm_for_equal_norm_endpoints_while_lerp_dips():
    a, b = _pair(dim=8, seed=1, norm=3.0)
    s_norms = latent.slerp(a, b, 11).norm(dim=1)
    l_norms = latent.lerp(a, b, 11).norm(dim=1)
    assert torch.allclose(s_norms, torch.full((11,), 3.0), rtol=1e-5)
    assert l_norms[5] < 3.0 * 0.95  # the straight line cuts through the low-norm interior
    assert torch.all(l_norms[1:-1] < 3.0)


def test_slerp_norm_is_linear_in_t_and_angle_uniform():
    a, b = _pair(dim=5, seed=2)
    a, b = a / a.norm() * 1.0, b / b.norm() * 4.0
    path = latent.slerp(a, b, 7)
    t = torch.linspace(0, 1, 7)
    assert torch.allclose(path.norm(dim=1), 1.0 + 3.0 * t, rtol=1e-5)
    unit = path / path.norm(dim=1, keepdim=True)
    angles = torch.arccos((unit[1:] * unit[:-1]).sum(1).clamp(-1, 1))
    total = torch.arccos((a / a.norm()) @ (b / b.norm()))
    assert torch.allclose(angles, (total / 6).expand(6), atol=1e-4)


@pytest.mark.parametrize("case", ["parallel", "antiparallel", "a zero", "b zero", "both zero", "nearly parallel"])
def test_slerp_degenerate_pairs_fall_back_without_nan(case):
    a = torch.tensor([1.0, -2.0, 0.5])
    b = {"parallel": 2.5 * a, "antiparallel": -a, "a zero": a, "b zero": torch.zeros(3),
         "both zero": torch.zeros(3), "nearly parallel": a + 1e-6}[case]
    if case in ("a zero", "both zero"):
        a = torch.zeros(3)
    path = latent.slerp(a, b, 9)
    assert torch.isfinite(path).all()
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    if case != "nearly parallel":  # the great circle is undefined: the straight line is the answer
        assert torch.allclose(path, latent.lerp(a, b, 9), atol=1e-6)
    else:
        assert torch.allclose(path, latent.lerp(a, b, 9), atol=1e-4)


# -- arithmetic, class means, attribute vectors ----------------------------------------------------


def test_arithmetic_a_minus_b_plus_c_with_scale():
    a, b, c = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0]), torch.tensor([3.0, 3.0])
    assert torch.equal(latent.arithmetic(a, b, c), torch.tensor([3.5, 6.0]))
    assert torch.equal(latent.arithmetic(a, b, c, scale=2.0), torch.tensor([4.0, 9.0]))
    assert torch.equal(latent.arithmetic(a, b, c, scale=0.0), c)
    assert torch.equal(latent.arithmetic(a, b, c, scale=-1.0), torch.tensor([2.5, 0.0]))


def test_class_means_match_a_manual_loop():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(40, 4, generator=g)
    labels = torch.randint(0, 5, (40,), generator=g)
    labels[:5] = torch.arange(5)  # every class present
    means = latent.class_means(z, labels)
    assert means.shape == (5, 4)
    for k in range(5):
        rows = [z[i] for i in range(40) if labels[i] == k]
        assert torch.allclose(means[k], torch.stack(rows).mean(0), atol=1e-6)


def test_class_means_with_num_classes_marks_empty_classes_nan():
    z = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    means = latent.class_means(z, [0, 0, 2], num_classes=4)
    assert means.shape == (4, 2)
    assert torch.equal(means[0], torch.tensor([2.0, 3.0]))
    assert torch.equal(means[2], torch.tensor([10.0, 0.0]))
    assert torch.isnan(means[1]).all() and torch.isnan(means[3]).all()


def test_attribute_vector_is_difference_of_means():
    z = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 0.0], [0.0, 4.0]])
    has = torch.tensor([True, True, False, False])
    assert torch.equal(latent.attribute_vector(z, has), torch.tensor([2.0, -1.0]))
    assert torch.equal(latent.attribute_vector(z, [0, 0, 1, 1]), torch.tensor([-2.0, 1.0]))


@pytest.mark.parametrize("has", [[True, True, True], [False, False, False], [1, 1, 1], [0, 0, 0]])
def test_attribute_vector_needs_both_groups(has):
    with pytest.raises(ValueError, match="both with and without"):
        latent.attribute_vector(torch.randn(3, 2), has)


def test_prior_log_density_matches_torch_distributions():
    z = torch.randn(20, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2
    prior = torch.distributions.MultivariateNormal(torch.zeros(6, dtype=torch.float64),
                                                   torch.eye(6, dtype=torch.float64))
    got = latent.prior_log_density(z)
    assert got.shape == (20,)
    assert torch.allclose(got, prior.log_prob(z), atol=1e-10)
    assert latent.prior_log_density(torch.zeros(1, 6)).item() == pytest.approx(-3 * math.log(2 * math.pi), rel=1e-6)


# -- properties on random inputs -----------------------------------------------------------------

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def vectors(draw, count=2):
    dim = draw(st.integers(1, 64))
    flat = draw(st.booleans())  # (D,) or (1, D): both shapes are latents
    out = []
    for _ in range(count):
        v = torch.tensor(draw(st.lists(finite, min_size=dim, max_size=dim)), dtype=torch.float32)
        out.append(v if flat else v.reshape(1, dim))
    return out


def _tolerance(*vs):
    return 1e-5 * (1.0 + max(float(v.abs().max()) for v in vs))


@settings(max_examples=150, deadline=None)
@given(vectors(), st.integers(2, 12))
def test_lerp_is_finite_and_keeps_endpoints(ab, steps):
    a, b = ab
    path = latent.lerp(a, b, steps)
    assert path.shape == (steps, a.numel())
    assert torch.isfinite(path).all()
    tol = _tolerance(a, b)
    assert torch.allclose(path[0], a.reshape(-1), rtol=0, atol=tol)
    assert torch.allclose(path[-1], b.reshape(-1), rtol=0, atol=tol)
    bound = max(a.norm().item(), b.norm().item())
    assert torch.all(path.norm(dim=1) <= bound * (1 + 1e-5) + tol)  # a segment stays in the ball


@settings(max_examples=200, deadline=None)
@given(vectors(), st.integers(2, 12))
def test_slerp_is_finite_keeps_endpoints_and_norms(ab, steps):
    a, b = ab
    path = latent.slerp(a, b, steps)
    assert path.shape == (steps, a.numel())
    assert torch.isfinite(path).all()
    assert torch.equal(path[0], a.reshape(-1)) and torch.equal(path[-1], b.reshape(-1))
    na, nb = a.norm().item(), b.norm().item()
    tol = _tolerance(a, b)
    norms = path.norm(dim=1)
    assert torch.all(norms <= max(na, nb) * (1 + 1e-4) + tol)
    if min(na, nb) > 1e-3:
        cos = (a.reshape(-1) @ b.reshape(-1)).item() / (na * nb)
        if abs(cos) < 0.99:  # a proper great circle: the norm moves linearly from |a| to |b|
            t = torch.linspace(0, 1, steps)
            assert torch.allclose(norms, (1 - t) * na + t * nb, rtol=1e-4, atol=tol)


@settings(max_examples=150, deadline=None)
@given(vectors(), st.lists(st.floats(0, 1, width=32), min_size=1, max_size=8))
def test_slerp_at_any_t_is_the_path_slerp_samples(ab, ts):
    """The live pad's scrubber asks for any t: slerp_at must agree with slerp's own points."""
    a, b = ab
    at = latent.slerp_at(a, b, ts)
    assert at.shape == (len(ts), a.numel()) and torch.isfinite(at).all()
    for row, t in zip(at, ts):
        if t in (0.0, 1.0):
            assert torch.equal(row, (a if t == 0 else b).reshape(-1))
    both = latent.slerp_at(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(both, latent.slerp(a, b, 5), rtol=0, atol=_tolerance(a, b))
    assert torch.allclose(latent.lerp_at(a, b, torch.linspace(0, 1, 5)), latent.lerp(a, b, 5), rtol=0, atol=0)


@settings(max_examples=150, deadline=None)
@given(vectors(count=3), st.floats(-10, 10, width=32))
def test_arithmetic_is_finite_and_consistent(abc, scale):
    a, b, c = abc
    out = latent.arithmetic(a, b, c, scale=scale)
    assert out.shape == c.shape
    assert torch.isfinite(out).all()
    tol = _tolerance(a, b, c) * (1 + abs(scale))
    assert torch.allclose(out, c + scale * (a - b), rtol=0, atol=tol)
    assert torch.equal(latent.arithmetic(a, a, c, scale=scale), c)  # no difference, no move
    assert torch.allclose(latent.arithmetic(a, b, b), a, rtol=0, atol=2 * tol)  # b + (a - b) = a
