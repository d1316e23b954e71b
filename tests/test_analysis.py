"""vae_core.analysis without Streamlit: MIG on cases with a known answer, imputation and anomaly
scores with the shipped checkpoints, and the upload path (images.load_image) the Anomalies page uses."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vae_core import analysis as A
from vae_core.checkpoint import load_checkpoint
from vae_core.datasets import load_dataset
from vae_core.images import ImageError, load_image

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "checkpoints"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist-5k")


def shipped(name: str):
    path = CHECKPOINTS / f"{name}.safetensors"
    if not path.exists():
        pytest.fail(f"{path} is missing: `make checkpoints` builds it")
    return load_checkpoint(path)


def factorial_factors(sizes=(3, 4, 8, 8), repeats: int = 8) -> np.ndarray:
    """Every combination of factors with these numbers of values, `repeats` times each (6,144 rows by
    default, like the shapes set): independent by construction, so their mutual information is 0."""
    grids = np.meshgrid(*[np.linspace(0.0, 1.0, n) for n in sizes], indexing="ij")
    return np.repeat(np.stack([g.ravel() for g in grids], 1), repeats, axis=0)


# -- MIG -----------------------------------------------------------------------------------------
def test_mig_is_one_when_each_dimension_copies_one_factor():
    factors = factorial_factors()
    result = A.mutual_information_gap(factors * 3.0 - 1.0, factors)  # an affine copy: same information
    assert result.mig == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(np.diag(result.normalized_mi), 1.0, atol=1e-9)
    assert list(result.best_factor) == [0, 1, 2, 3]
    np.testing.assert_allclose(result.entropy, np.log([3, 4, 8, 8]))


def test_mig_ignores_the_order_of_dimensions_and_extra_noise_dimensions():
    factors = factorial_factors()
    rng = np.random.default_rng(0)
    z = np.concatenate([factors[:, ::-1], rng.normal(size=(len(factors), 2))], 1)
    result = A.mutual_information_gap(z, factors)
    assert result.mig > 0.95  # the noise dimensions hold a little spurious information, no more
    assert list(result.best_factor) == [3, 2, 1, 0, -1, -1]
    assert list(result.top_dims[:, 0]) == [3, 2, 1, 0]


def test_mig_is_near_zero_for_a_latent_of_pure_noise():
    factors = factorial_factors()
    z = np.random.default_rng(1).normal(size=(len(factors), 4))
    result = A.mutual_information_gap(z, factors)
    assert 0.0 <= result.mig < 0.03
    assert np.nanmax(result.normalized_mi) < 0.1
    assert list(result.best_factor) == [-1, -1, -1, -1]


def test_mig_gap_vanishes_when_two_dimensions_copy_the_same_factor():
    factors = factorial_factors()
    z = np.stack([factors[:, 2], 2.0 * factors[:, 2] + 5.0, factors[:, 0], factors[:, 1], factors[:, 3]], 1)
    result = A.mutual_information_gap(z, factors)
    assert result.gaps[2] == pytest.approx(0.0, abs=1e-9), "both copies know the factor equally well"
    np.testing.assert_allclose(result.gaps[[0, 1, 3]], 1.0, atol=1e-9)
    assert result.mig == pytest.approx(0.75, abs=1e-9)
    assert result.best_factor[0] == result.best_factor[1] == 2


def test_mig_of_a_mixed_latent_lies_between():
    """Rotating two copied factors into each other spreads each over two dimensions: MIG drops."""
    factors = factorial_factors((8, 8))
    a, b = factors[:, 0], factors[:, 1]
    mixed = A.mutual_information_gap(np.stack([a + b, a - b], 1), factors)
    clean = A.mutual_information_gap(factors, factors)
    assert 0.0 <= mixed.mig < 0.5 < clean.mig


def test_mig_skips_constant_factors_and_bins_continuous_ones():
    rng = np.random.default_rng(2)
    continuous = rng.uniform(size=2000)
    factors = np.stack([continuous, np.zeros(2000)], 1)
    result = A.mutual_information_gap(continuous[:, None] * 2.0, factors)
    assert np.isnan(result.gaps[1]) and result.entropy[1] == 0.0
    assert result.mig == pytest.approx(1.0)
    assert A.factor_codes(factors).max(0).tolist() == [19, 0], "a continuous factor goes into 20 bins"
    with pytest.raises(ValueError):
        A.mutual_information_gap(np.zeros((10, 2)), np.zeros((9, 1)))


def test_mig_of_the_shipped_shapes_models_is_a_valid_score():
    data = load_dataset("shapes")
    from vae_core.metrics import encode_all

    z = encode_all(shipped("shapes-vae").model, data.x_test[:2000])[0].numpy()
    result = A.mutual_information_gap(z, data.factors_test[:2000].numpy())
    assert 0.0 <= result.mig <= 1.0
    assert result.normalized_mi.shape == (10, 5)
    assert (result.normalized_mi >= 0).all() and (result.normalized_mi <= 1 + 1e-9).all()
    assert set(result.best_factor.tolist()) <= {-1, 0, 1, 2, 3, 4}


# -- imputation -----------------------------------------------------------------------------------
def test_masks():
    rect = A.rectangle_mask(8, 8, 6, 5, 4, 4)  # runs off the corner: clipped
    assert rect.sum() == 2 * 3 and rect[6:, 5:].all()
    assert A.rectangle_mask(8, 8, 0, 0, 8, 8).all()
    rand = A.random_mask(8, 8, 0.25, seed=3)
    assert rand.sum() == 16
    assert torch.equal(rand, A.random_mask(8, 8, 0.25, seed=3))
    assert not torch.equal(rand, A.random_mask(8, 8, 0.25, seed=4))
    with pytest.raises(ValueError):
        A.random_mask(8, 8, 1.5)


@pytest.mark.parametrize("mask", [A.rectangle_mask(8, 8, 2, 2, 4, 4), A.rectangle_mask(8, 8, 4, 0, 4, 8),
                                  A.random_mask(8, 8, 0.5, seed=0)], ids=["centre", "bottom-half", "random-half"])
def test_imputation_beats_the_masked_image_on_digits(digits, mask):
    model = shipped("digits-vae").model
    x = digits.x_test[:40]
    result = A.impute(model, x, mask, iterations=10)
    baseline, filled = result.error_baseline.mean().item(), result.error_filled.mean().item()
    assert filled < 0.5 * baseline, (baseline, filled)
    assert (result.error_filled < result.error_baseline).float().mean() > 0.9
    keep = ~result.mask
    assert torch.equal(result.filled[keep], x[keep]), "observed pixels never change"
    assert torch.equal(result.masked[result.mask], torch.zeros(int(result.mask.sum())))
    assert len(result.steps) == 10 and torch.equal(result.steps[-1], result.filled)
    # more iterations help on average: the first step is worse than the tenth
    first = A.masked_mse(result.steps[0], x, result.mask).mean().item()
    assert filled < first


def test_imputation_from_the_mean_image_and_pseudo_gibbs(digits):
    model = shipped("digits-vae").model
    x, mask = digits.x_test[:40], A.random_mask(8, 8, 0.5, seed=1)
    mean = digits.x_train.mean(0)
    from_mean = A.impute(model, x, mask, iterations=10, fill=mean)
    assert torch.allclose(from_mean.masked[from_mean.mask], mean.expand_as(x)[from_mean.mask])
    assert from_mean.error_filled.mean() < from_mean.error_baseline.mean(), "beats the stronger mean baseline too"
    gibbs = A.impute(model, x, mask, iterations=10, mode="gibbs", seed=5)
    assert gibbs.error_filled.mean() < gibbs.error_baseline.mean()
    assert torch.equal(gibbs.filled, A.impute(model, x, mask, iterations=10, mode="gibbs", seed=5).filled)
    assert not torch.equal(gibbs.filled, A.impute(model, x, mask, iterations=10, mode="gibbs", seed=6).filled)


def test_imputation_of_a_conditional_model_needs_labels(mnist):
    model = shipped("mnist-cvae").model
    x, mask = mnist.x_test[:20], A.rectangle_mask(28, 28, 0, 0, 14, 28)
    with pytest.raises(ValueError, match="label"):
        A.impute(model, x, mask)
    result = A.impute(model, x, mask, y=mnist.y_test[:20])
    assert result.error_filled.mean() < result.error_baseline.mean()
    with pytest.raises(ValueError):
        A.impute(model, x, mask, y=mnist.y_test[:20], mode="median")


# -- anomalies -------------------------------------------------------------------------------------
def test_held_out_class_is_found_by_both_scores(mnist):
    ckpt = shipped("mnist-vae-no3")
    assert ckpt.dataset["name"] == "mnist-5k-without-3" and A.held_out_class(ckpt.dataset["name"]) == 3
    data = load_dataset(ckpt.dataset["name"])
    assert torch.equal(data.x_test, mnist.x_test), "the held-out model is scored on the full test set"
    assert not (data.y_train == 3).any() and (data.y_test == 3).sum() == 100
    scores = A.anomaly_scores(ckpt.model, data.x_test)
    seen = A.anomaly_scores(shipped("mnist-vae").model, data.x_test)  # the same recipe, 3s included
    labels = data.y_test.numpy()
    for kind in A.SCORES:
        auc = A.holdout_auc(scores[kind], labels, 3)
        assert auc > 0.8, f"{kind}: ROC AUC {auc:.3f} for the unseen class"
        assert auc > A.holdout_auc(seen[kind], labels, 3) + 0.2, "it is the holding out that makes 3s stand out"


@pytest.mark.parametrize("name", ["digits-vae", "mnist-vae", "mnist-cvae"])
def test_noise_scores_more_anomalous_than_every_test_digit(name):
    model = shipped(name).model
    data = load_dataset(shipped(name).dataset["name"])
    noise = torch.rand(8, *model.config.input_shape, generator=torch.Generator().manual_seed(0))
    test = A.anomaly_scores(model, data.x_test, data.y_test)
    scores = A.anomaly_scores(model, noise)  # a CVAE scores it under its best class
    for kind in A.SCORES:
        assert scores[kind].shape == (8,) and test[kind].shape == (len(data.x_test),)
        assert np.isfinite(test[kind]).all()
        assert scores[kind].min() > test[kind].max(), (name, kind)


def test_scores_are_per_sample_and_deterministic(digits):
    model = shipped("digits-vae").model
    x = digits.x_test[:50]
    full = A.anomaly_scores(model, x)
    batched = A.anomaly_scores(model, x, batch_size=7)
    for kind in A.SCORES:
        np.testing.assert_allclose(full[kind], batched[kind], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(A.anomaly_scores(model, x[10:11])[kind], full[kind][10:11], rtol=1e-5, atol=1e-5)
    # the per-sample negative ELBO averages to the model's own batch-mean loss (beta = 1 terms)
    sampled = A.anomaly_scores(model, x, samples=1, seed=3)
    eps = torch.randn(1, len(x), model.config.latent_dim, generator=torch.Generator().manual_seed(3))[0]
    with torch.inference_mode():
        parts = model.loss(x, eps=eps)
    assert sampled["neg_elbo"].mean() == pytest.approx(-parts["elbo"].item(), rel=1e-5)
    mse = ((model.reconstruct(x) - x) ** 2).flatten(1).mean(1).detach().numpy()
    np.testing.assert_allclose(full["recon_error"], mse, rtol=1e-5)
    with pytest.raises(ValueError):
        A.anomaly_scores(model, torch.zeros(2, 1, 32, 32))


def test_a_conditional_model_without_labels_uses_its_best_class(mnist):
    model = shipped("mnist-cvae").model
    x, y = mnist.x_test[:30], mnist.y_test[:30]
    own = A.anomaly_scores(model, x, y)
    best = A.anomaly_scores(model, x)
    assert (best["neg_elbo"] <= own["neg_elbo"] + 1e-6).all()


def test_held_out_class_names_and_auc_edge_cases():
    assert A.held_out_class("digits-without-3") == 3
    assert A.held_out_class("npz:/data/x-without-12") == 12
    assert A.held_out_class("digits") is None and A.held_out_class(None) is None
    assert A.holdout_auc(np.array([0.1, 0.2, 0.9]), np.array([0, 0, 3]), 3) == 1.0
    with pytest.raises(ValueError):
        A.holdout_auc(np.array([0.1, 0.2]), np.array([0, 0]), 3)


# -- the upload path of the Anomalies page: bytes -> load_image -> anomaly_scores ---------------
def png(img: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **save)
    return buf.getvalue()


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"definitely not a picture", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),  # a PNG signature, then rubbish
], ids=["empty", "text", "broken-png"])
def test_unusable_uploads_raise_a_clear_image_error(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data, (1, 8, 8))


def test_a_truncated_png_raises_an_image_error():
    data = png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)))
    with pytest.raises(ImageError):
        load_image(data[: len(data) // 2], (1, 8, 8))


def test_a_huge_png_is_refused_from_its_header():
    data = png(Image.new("1", (10_000, 10_000)))  # 1-bit and blank: a small file, 10^8 pixels
    assert len(data) < 2_000_000
    with pytest.raises(ImageError, match="too large"):
        load_image(data, (1, 8, 8))


def _digit_like(mode: str) -> Image.Image:
    """A light stroke on black, in various modes."""
    grey = np.zeros((40, 40), dtype=np.uint8)
    grey[5:35, 15:25] = 255
    base = Image.fromarray(grey)
    if mode == "RGBA":
        rgba = np.zeros((40, 40, 4), dtype=np.uint8)
        rgba[..., :3] = grey[..., None]
        rgba[..., 3] = np.where(grey > 0, 255, 0)  # transparent background flattens onto black
        return Image.fromarray(rgba, "RGBA")
    if mode == "P":
        return base.convert("RGB").convert("P", palette=Image.ADAPTIVE, colors=4)
    if mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 257)
    return base.convert(mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "LA"])
def test_any_image_mode_converts_to_the_models_input(mode):
    x = load_image(png(_digit_like(mode)), (1, 8, 8))
    assert x.shape == (1, 1, 8, 8) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert x[0, 0, 2:6, 3:5].mean() > 0.5 > x[0, 0, :, 0].mean(), "the stroke stays light, the background dark"
    scores = A.anomaly_scores(shipped("digits-vae").model, x)
    assert all(np.isfinite(v).all() and v.shape == (1,) for v in scores.values())


@pytest.mark.parametrize("size", [(200, 20), (20, 200), (9, 8), (1, 1)], ids=["wide", "tall", "nearly-square", "one-pixel"])
def test_wrong_aspect_ratios_are_centre_cropped(size):
    x = load_image(png(Image.new("L", size, 40)), (1, 32, 32))
    assert x.shape == (1, 1, 32, 32)
    rgb = load_image(png(Image.new("RGB", size, (10, 200, 30))), (3, 8, 8), invert=False)
    assert rgb.shape == (1, 3, 8, 8)
    assert rgb[0, 1].mean() > rgb[0, 0].mean(), "channels stay in RGB order"


def test_a_jpeg_upload_of_a_dark_digit_on_paper_is_inverted():
    light = Image.fromarray(255 - np.asarray(_digit_like("L")))
    buf = io.BytesIO()
    light.save(buf, format="JPEG")
    x = load_image(buf.getvalue(), (1, 8, 8))
    assert x[0, 0, 2:6, 3:5].mean() > 0.5 > x[0, 0, :, 0].mean()


def test_a_users_own_model_works_too():
    """The sidebar can open a user's module (vae_core.external): the analyses use only the VAE interface."""
    from test_external import MLP_SOURCE
    from vae_core.external import ExternalVAE

    namespace = {}
    exec(MLP_SOURCE, namespace)  # noqa: S102 - the test's own source text
    torch.manual_seed(0)
    model = ExternalVAE(namespace["VAE"](), (1, 8, 8), decoder_outputs="probabilities")
    x = torch.rand(5, 1, 8, 8)
    scores = A.anomaly_scores(model, x)
    assert all(v.shape == (5,) and np.isfinite(v).all() for v in scores.values())
    result = A.impute(model, x, A.random_mask(8, 8, 0.3), iterations=3)
    assert torch.equal(result.filled[~result.mask], x[~result.mask])
