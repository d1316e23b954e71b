"""Latent-space maths: traversal, interpolation, arithmetic, attribute vectors, prior density.

Pure tensor functions (no model inside), so the app can call them and the tests can pin them down.
"""
from __future__ import annotations

import torch

from .losses import standard_normal_log_density


def traverse(z: torch.Tensor, dim: int, values) -> torch.Tensor:
    """Copies of the latent vector z, one per value, with dimension `dim` set to that value."""
    values = torch.as_tensor(values, dtype=z.dtype, device=z.device).flatten()
    out = z.reshape(1, -1).repeat(len(values), 1)
    out[:, dim] = values
    return out


def traversal_grid(z: torch.Tensor, dims, span: float = 3.0, steps: int = 9) -> torch.Tensor:
    """(len(dims) * steps, D) latents: row i sweeps dimension dims[i] over [-span, +span]."""
    values = torch.linspace(-span, span, steps, dtype=z.dtype)
    return torch.cat([traverse(z, d, values) for d in dims])


def lerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Straight line a -> b in `steps` points, both endpoints included."""
    return lerp_at(a, b, torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device))


def lerp_at(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """The points (1 - t) a + t b, one row per value of t."""
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device).reshape(-1, 1)
    return (1 - t) * a.reshape(1, -1) + t * b.reshape(1, -1)


def slerp(a: torch.Tensor, b: torch.Tensor, steps: int, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation (Shoemake, 1985; White, 2016 for generative models) in `steps` points.

    Rotates the direction a -> b along the great circle while interpolating the norm linearly,
    so the path keeps the norm of typical prior draws instead of cutting through the low-density
    centre the way lerp does. Exact endpoints; falls back to lerp when a and b are (anti)parallel
    or either is zero, where the great circle is undefined.
    """
    return slerp_at(a, b, torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device), eps)


def slerp_at(a: torch.Tensor, b: torch.Tensor, t, eps: float = 1e-7) -> torch.Tensor:
    """slerp's points at the fractions t (one row each); t = 0 and 1 give a and b exactly.
    The live pad's scrubber (pages/ui/live_pad) computes the same in JavaScript."""
    a, b = a.reshape(-1), b.reshape(-1)
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device).reshape(-1, 1)
    na, nb = a.norm(), b.norm()
    if na < eps or nb < eps:
        return lerp_at(a, b, t)
    ua, ub = a / na, b / nb
    # The angle as 2 atan2(|ua - ub|, |ua + ub|) (Kahan): exact at 0 and pi, where arccos of a
    # rounded dot product is off by ~3e-4 in float32 and would miss the (anti)parallel fallback.
    omega = 2 * torch.atan2((ua - ub).norm(), (ua + ub).norm())
    if omega.abs() < 1e-4 or (torch.pi - omega).abs() < 1e-4:
        return lerp_at(a, b, t)
    so = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) / so) * ua + (torch.sin(t * omega) / so) * ub
    out = direction * ((1 - t) * na + t * nb)
    out[t[:, 0] <= 0], out[t[:, 0] >= 1] = a, b  # exact endpoints, free of rounding
    return out


def arithmetic(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """a - b + c, the analogy 'c is to ? as b is to a', with the added vector (a - b) scaled."""
    return c + scale * (a - b)


def class_means(z: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """(num_classes, D) mean latent of each class; a class with no sample gets NaN."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    sums = torch.zeros(k, z.shape[1], dtype=z.dtype).index_add_(0, labels, z)
    counts = torch.bincount(labels, minlength=k).to(z.dtype).unsqueeze(1)
    return sums / counts


def attribute_vector(z: torch.Tensor, has_attribute: torch.Tensor) -> torch.Tensor:
    """Mean of the points with the attribute minus mean of those without (e.g. 'bigger')."""
    has_attribute = torch.as_tensor(has_attribute, dtype=torch.bool)
    if has_attribute.all() or not has_attribute.any():
        raise ValueError("an attribute vector needs points both with and without the attribute")
    return z[has_attribute].mean(0) - z[~has_attribute].mean(0)


def prior_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) for each row: how typical each point is under the prior."""
    return standard_normal_log_density(z)
