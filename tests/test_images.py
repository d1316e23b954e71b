"""Pictures of tensors: grids, uint8 conversion, PNG and GIF bytes, zoom factors."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from vae_core.images import gif_bytes, load_image, make_grid, png_bytes, to_pil, to_uint8, upscale_factor


def _distinct_tiles(n, c=1, h=3, w=4):
    """n images, each a constant level of its own (tile i is (i + 1) * 20 / 255), so tiles can be told apart."""
    levels = (torch.arange(n, dtype=torch.float32) + 1) * 20 / 255
    return levels.view(n, 1, 1, 1).expand(n, c, h, w).clone()


# -- to_uint8 ------------------------------------------------------------------------------------


def test_to_uint8_layout_and_dtype():
    images = torch.rand(2, 3, 5, 7)
    arr = to_uint8(images)
    assert arr.shape == (2, 5, 7, 3) and arr.dtype == np.uint8
    # channel c of pixel (y, x) of image n comes from images[n, c, y, x], scaled and rounded
    expected = np.rint(images.numpy() * np.float32(255)).astype(np.uint8).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(arr, expected)


@pytest.mark.parametrize("value, expected", [(0.0, 0), (1.0, 255), (127.4 / 255, 127), (127.6 / 255, 128),
                                             (0.2 / 255, 0), (0.8 / 255, 1), (254.6 / 255, 255),
                                             (-0.5, 0), (-1e9, 0), (1.5, 255), (1e9, 255)])
def test_to_uint8_rounds_and_clamps(value, expected):
    assert to_uint8(torch.full((1, 1, 1, 1), value))[0, 0, 0, 0] == expected


def test_to_uint8_of_tensors_needing_grad_and_other_dtypes():
    x = torch.full((1, 1, 2, 2), 0.5, requires_grad=True) * 1.0
    assert to_uint8(x).max() == 128
    assert to_uint8(torch.ones(1, 1, 2, 2, dtype=torch.float64)).min() == 255
    assert to_uint8(torch.ones(1, 1, 2, 2, dtype=torch.float16)).min() == 255


# -- make_grid -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n, ncols, rows", [(6, 3, 2), (7, 3, 3), (1, 4, 1), (4, 1, 4), (12, 5, 3)])
@pytest.mark.parametrize("padding", [0, 1, 3])
def test_make_grid_shape_and_placement(n, ncols, rows, padding):
    c, h, w = 1, 3, 4
    images = _distinct_tiles(n, c, h, w)
    grid = make_grid(images, ncols, padding=padding, pad_value=0.0)
    assert grid.dtype == np.uint8
    assert grid.shape == (rows * (h + padding) + padding, ncols * (w + padding) + padding, c)
    covered = np.zeros(grid.shape[:2], dtype=bool)
    for i in range(n):
        r, col = i // ncols, i % ncols
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        assert (grid[y:y + h, x:x + w] == (i + 1) * 20).all(), f"tile {i} is not at row {r}, col {col}"
        covered[y:y + h, x:x + w] = True
    assert (grid[~covered] == 0).all()  # padding and empty cells hold pad_value


@pytest.mark.parametrize("pad_value, expected", [(1.0, 255), (0.0, 0), (0.5, 128)])
def test_make_grid_padding_value(pad_value, expected):
    images = torch.full((3, 1, 2, 2), 0.2)  # 3 tiles on a 2x2 grid leaves one empty cell
    grid = make_grid(images, ncols=2, padding=2, pad_value=pad_value)
    assert grid.shape == (2 * 4 + 2, 2 * 4 + 2, 1)
    tile = round(0.2 * 255)
    mask = np.zeros(grid.shape[:2], dtype=bool)
    for y, x in [(2, 2), (2, 6), (6, 2)]:
        mask[y:y + 2, x:x + 2] = True
    assert (grid[mask] == tile).all()
    assert (grid[~mask] == expected).all()
    assert (grid[6:8, 6:8] == expected).all()  # the empty cell


def test_make_grid_colour_tiles():
    images = torch.zeros(2, 3, 2, 2)
    images[0, 0] = 1.0  # red
    images[1, 2] = 1.0  # blue
    grid = make_grid(images, ncols=2, padding=1)
    assert grid.shape == (4, 7, 3)
    assert (grid[1:3, 1:3] == [255, 0, 0]).all()
    assert (grid[1:3, 4:6] == [0, 0, 255]).all()
    assert (grid[0] == 255).all() and (grid[:, 3] == 255).all()


def test_make_grid_clamps_values():
    images = torch.tensor([-3.0, 0.25, 7.0]).view(3, 1, 1, 1)
    grid = make_grid(images, ncols=3, padding=0)
    assert grid[0, :, 0].tolist() == [0, round(0.25 * 255), 255]


def test_make_grid_more_columns_than_images():
    grid = make_grid(_distinct_tiles(2, h=2, w=2), ncols=5, padding=1, pad_value=1.0)
    assert grid.shape == (4, 16, 1)
    assert (grid[1:3, 7:] == 255).all()


# -- PNG -----------------------------------------------------------------------------------------


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize("scale", [1, 2, 5])
@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_png_bytes_size_and_pixels(scale, channels, mode):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(3, 5, channels), dtype=np.uint8)
    data = png_bytes(array, scale=scale)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = _decode(data)
    assert img.format == "PNG" and img.mode == mode
    assert img.size == (5 * scale, 3 * scale)  # PIL sizes are (width, height)
    decoded = np.asarray(img).reshape(3 * scale, 5 * scale, channels)
    enlarged = array.repeat(scale, axis=0).repeat(scale, axis=1)  # crisp, nearest-neighbour pixels
    np.testing.assert_array_equal(decoded, enlarged)


def test_png_of_a_grid():
    grid = make_grid(torch.rand(5, 1, 8, 8), ncols=3)
    img = _decode(png_bytes(grid, scale=upscale_factor(8)))
    assert img.size == (grid.shape[1] * 20, grid.shape[0] * 20)


def test_to_pil_scale_one_is_the_array():
    array = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    np.testing.assert_array_equal(np.asarray(to_pil(array)), array[..., 0])


# -- GIF -----------------------------------------------------------------------------------------


def _frames(data: bytes) -> list[np.ndarray]:
    img = Image.open(io.BytesIO(data))
    assert img.format == "GIF"
    return [np.asarray(frame.convert("L")) for frame in ImageSequence.Iterator(img)]


def _levels(n):
    """n frames, each a distinct flat grey, so every frame survives GIF encoding as its own frame."""
    return torch.linspace(0.1, 0.9, n).view(n, 1, 1, 1).expand(n, 1, 4, 6).clone()


@pytest.mark.parametrize("n", [3, 5, 8])
def test_gif_bounces_forward_then_back(n):
    frames = _levels(n)
    data = gif_bytes(frames, scale=2, bounce=True)
    decoded = _frames(data)
    assert len(decoded) == 2 * n - 2
    order = list(range(n)) + list(range(n - 2, 0, -1))
    expected = to_uint8(frames)[:, 0, 0, 0]
    for frame, index in zip(decoded, order):
        assert frame.shape == (8, 12)
        assert np.abs(frame.astype(int) - int(expected[index])).max() <= 2


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_gif_without_bounce(n):
    frames = _levels(n)
    decoded = _frames(gif_bytes(frames, scale=3, bounce=False))
    assert len(decoded) == n
    expected = to_uint8(frames)[:, 0, 0, 0]
    for frame, level in zip(decoded, expected):
        assert frame.shape == (12, 18)
        assert np.abs(frame.astype(int) - int(level)).max() <= 2


@pytest.mark.parametrize("n", [1, 2])
def test_gif_too_short_to_bounce(n):
    assert len(_frames(gif_bytes(_levels(n), bounce=True))) == n


def test_gif_size_timing_and_loop():
    data = gif_bytes(_levels(4), scale=5, duration_ms=120)
    img = Image.open(io.BytesIO(data))
    assert img.size == (30, 20)
    assert img.n_frames == 6
    assert img.info.get("loop") == 0  # loops forever
    assert img.info.get("duration") == 120


def test_gif_of_colour_frames():
    frames = torch.zeros(3, 3, 2, 2)
    for i in range(3):
        frames[i, i] = 1.0  # red, green, blue
    img = Image.open(io.BytesIO(gif_bytes(frames, scale=1, bounce=False)))
    colours = [tuple(frame.convert("RGB").getpixel((0, 0))) for frame in ImageSequence.Iterator(img)]
    assert colours == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


# -- zoom ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("height", list(range(1, 400, 7)) + [8, 28, 64, 160, 161, 1000])
@pytest.mark.parametrize("target", [160, 100])
def test_upscale_factor_is_the_nearest_integer_zoom(height, target):
    factor = upscale_factor(height, target)
    assert isinstance(factor, int) and factor >= 1
    # no other whole zoom (never below 1: no shrinking) comes closer to the target height
    best = min(abs(height * f - target) for f in range(1, target + 2))
    assert abs(height * factor - target) == best
    if height > target:
        assert factor == 1


def test_upscale_factor_examples():
    assert upscale_factor(8) == 20  # 8x8 digits
    assert upscale_factor(160) == 1
    assert upscale_factor(28) in (5, 6) and abs(28 * upscale_factor(28) - 160) <= 14
    assert upscale_factor(10_000) == 1


# -- any picture a student finds: property-based ----------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_MODES = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2, "P": 1, "1": 1, "I;16": 1, "CMYK": 4}


@st.composite
def uploaded_pictures(draw):
    mode = draw(st.sampled_from(sorted(_MODES)))
    width, height = draw(st.integers(1, 120)), draw(st.integers(1, 120))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    else:
        channels = _MODES[mode]
        pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        base = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
        image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, base)
        if mode in ("P", "1", "CMYK"):
            image = image.convert(mode)
    formats = {"CMYK": ["JPEG", "TIFF"], "L": ["JPEG", "PNG"], "RGB": ["JPEG", "PNG", "WEBP", "BMP"]}
    fmt = draw(st.sampled_from(formats.get(mode, ["PNG"])))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@settings(max_examples=60, deadline=None)
@given(uploaded_pictures(), st.sampled_from([(1, 8, 8), (1, 28, 28), (3, 32, 32), (1, 64, 64)]))
def test_any_picture_becomes_a_model_sized_tensor_in_range(data, shape):
    tensor = load_image(data, shape)
    assert tuple(tensor.shape) == (1, *shape)
    assert tensor.dtype == torch.float32
    assert torch.isfinite(tensor).all()
    assert tensor.min() >= 0 and tensor.max() <= 1
