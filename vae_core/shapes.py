"""A procedurally generated dSprites-style set (Matthey et al., 2017): shape x scale x rotation x x x y.

Every combination of the factors is rendered once, so the set is the same on every machine and
its ground-truth factors are known exactly — what disentanglement metrics need.
"""
from __future__ import annotations

import numpy as np

SHAPE_NAMES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y")


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Implicit shapes in a unit box, in shape-local coordinates (u right, v up)."""
    if shape == 0:
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if shape == 1:
        return (u / 1.0) ** 2 + (v / 0.55) ** 2 <= 1.0
    # heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, scaled to fit the unit box
    x, y = u * 1.25, v * 1.25 + 0.15
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


def render_shapes(
    size: int = 32, scales: int = 4, rotations: int = 8, positions: int = 8, supersample: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """All factor combinations as float32 images (N, 1, size, size) in [0, 1] and factors (N, 5).

    Factor values: shape index, scale in [0.6, 1], rotation in [0, 2pi), x and y in [0, 1].
    Anti-aliased by rendering at `supersample` times the size and averaging.
    """
    grids = np.meshgrid(
        np.arange(len(SHAPE_NAMES)),
        np.linspace(0.6, 1.0, scales),
        np.linspace(0, 2 * np.pi, rotations, endpoint=False),
        np.linspace(0, 1, positions),
        np.linspace(0, 1, positions),
        indexing="ij",
    )
    factors = np.stack([g.ravel() for g in grids], 1)
    fine = size * supersample
    coords = (np.arange(fine) + 0.5) / fine  # pixel centres in [0, 1]
    px, py = np.meshgrid(coords, coords[::-1], indexing="xy")  # py grows upward
    radius = 0.2  # a scale-1 shape spans about 40% of the frame, so it fits at every position
    images = np.empty((len(factors), fine, fine), dtype=bool)
    for i, (shape, scale, angle, cx, cy) in enumerate(factors):
        centre_x, centre_y = radius + cx * (1 - 2 * radius), radius + cy * (1 - 2 * radius)
        dx, dy = (px - centre_x) / (radius * scale), (py - centre_y) / (radius * scale)
        cos, sin = np.cos(angle), np.sin(angle)
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # rotate into the shape's frame
        images[i] = _inside(int(shape), u, v)
    pooled = images.reshape(len(factors), size, supersample, size, supersample).mean((2, 4))
    return pooled[:, None].astype(np.float32), factors.astype(np.float32)
