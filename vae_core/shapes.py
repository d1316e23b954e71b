"""A procedurally generated dSprites-style set (Matthey et al., 2017): shape x scale x rotation x x x y.

Every combination of the factors is rendered once (3 x 6 x 16 x 16 x 16 = 73,728 images), so the
set is the same on every machine and its ground-truth factors are known exactly: what
disentanglement metrics need. Each (shape, scale, rotation) is drawn once as an anti-aliased sprite
and then moved by whole pixels, so the 73,728 images cost 288 renders and some copying (~1 s at 64 px).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

SHAPE_NAMES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y")
SIZES = (32, 64)  # positions move by size / 32 pixels, so the sprite's moves are whole pixels
SCALES, ROTATIONS, POSITIONS = 6, 16, 16
# A scale-1 shape spans radius = 0.2 of the frame from its centre (a rotated square reaches 0.23), so
# centres spread over 15/32 = 0.47 of the frame keep every shape inside it.
RADIUS = 0.2


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Implicit shapes in a unit box, in shape-local coordinates (u right, v up)."""
    if shape == 0:
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if shape == 1:
        return (u / 1.0) ** 2 + (v / 0.55) ** 2 <= 1.0
    # heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, scaled to fit the unit box
    x, y = u * 1.25, v * 1.25 + 0.15
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


def factor_values() -> tuple[np.ndarray, ...]:
    """The values of each factor: shape index, scale in [0.5, 1], rotation in [0, 2pi), x and y in [0, 1]."""
    return (np.arange(len(SHAPE_NAMES), dtype=np.float64), np.linspace(0.5, 1.0, SCALES),
            np.linspace(0, 2 * np.pi, ROTATIONS, endpoint=False), np.linspace(0, 1, POSITIONS),
            np.linspace(0, 1, POSITIONS))


def _sprites(size: int, supersample: int) -> np.ndarray:
    """(shapes, scales, rotations, size, size) uint8 in 0..255: each sprite at the top-left position."""
    shapes, scales, rotations, _, _ = factor_values()
    step = size // 32
    fine = size * supersample
    coords = (np.arange(fine) + 0.5) / fine  # pixel centres in [0, 1]
    px, py = np.meshgrid(coords, coords[::-1], indexing="xy")  # py grows upward
    # Centre of the first position: the frame's centre less 7.5 moves; position k adds k moves.
    origin_x = 0.5 - (POSITIONS - 1) / 2 * step / size
    origin_y = 0.5 - (POSITIONS - 1) / 2 * step / size  # from the bottom, since py grows upward
    out = np.empty((len(shapes), len(scales), len(rotations), size, size), dtype=np.uint8)
    for s in range(len(shapes)):
        for i, scale in enumerate(scales):
            dx, dy = (px - origin_x) / (RADIUS * scale), (py - origin_y) / (RADIUS * scale)
            for j, angle in enumerate(rotations):
                cos, sin = np.cos(angle), np.sin(angle)
                mask = _inside(s, cos * dx + sin * dy, -sin * dx + cos * dy)
                pooled = mask.reshape(size, supersample, size, supersample).mean((1, 3))
                out[s, i, j] = np.rint(pooled * 255)
    return out


@lru_cache(maxsize=2)
def render_shapes(size: int = 64, supersample: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """All factor combinations as uint8 images (N, 1, size, size), 0..255, and float32 factors (N, 5).

    Rows run over shape, scale, rotation, x, y (y fastest). Cached per process and read-only: the
    app's pages and the trainer share one copy.
    """
    if size not in SIZES:
        raise ValueError(f"shapes are rendered at {' or '.join(map(str, SIZES))} pixels, not {size}")
    sprites = _sprites(size, supersample)
    step = size // 32
    n_s, n_sc, n_r = sprites.shape[:3]
    images = np.zeros((n_s, n_sc, n_r, POSITIONS, POSITIONS, size, size), dtype=np.uint8)
    reach = (POSITIONS - 1) * step
    for a in range(POSITIONS):  # x: move right by a steps
        for b in range(POSITIONS):  # y: move up by b steps (rows shift towards the top)
            dx, dy = a * step, b * step
            images[:, :, :, a, b, reach - dy: size - dy, dx: size - reach + dx] = \
                sprites[:, :, :, reach:, : size - reach]
    grids = np.meshgrid(*factor_values(), indexing="ij")
    factors = np.stack([g.ravel() for g in grids], 1).astype(np.float32)
    images = images.reshape(-1, 1, size, size)
    images.flags.writeable = False
    factors.flags.writeable = False
    return images, factors
