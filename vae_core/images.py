"""Pictures of tensors: image grids, PNG/GIF bytes, thumbnails. No Streamlit here."""
from __future__ import annotations

import base64
import io
import warnings

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (N, H, W, C) uint8."""
    arr = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return arr.transpose(0, 2, 3, 1)


def make_grid(images: torch.Tensor, ncols: int, padding: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile (N, C, H, W) into one (rows*H', cols*W', C) uint8 array, row-major, padded between tiles."""
    n, c, h, w = images.shape
    nrows = max(1, -(-n // ncols))
    canvas = np.full((nrows * (h + padding) + padding, ncols * (w + padding) + padding, c),
                     round(pad_value * 255), dtype=np.uint8)
    tiles = to_uint8(images)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        canvas[y:y + h, x:x + w] = tiles[i]
    return canvas


def to_pil(array: np.ndarray, scale: int = 1) -> Image.Image:
    """A (H, W, C) uint8 array as a PIL image, enlarged `scale` times with crisp (nearest) pixels."""
    img = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


# zlib level 1, not PIL's 6: the server encodes pictures on every move of every student, and for
# the Traversal grid (8 x 9 MNIST digits, 2x) level 1 took 2.1 ms against 5.1 for 23% more bytes
# (25,343 against 20,580; in-process, one thread).
PNG_COMPRESS_LEVEL = 1


def png_bytes(array: np.ndarray, scale: int = 1) -> bytes:
    buf = io.BytesIO()
    to_pil(array, scale).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def gif_bytes(frames: torch.Tensor, scale: int = 4, duration_ms: int = 80, bounce: bool = True) -> bytes:
    """An animated GIF of (N, C, H, W) frames; `bounce` plays forward then back, for a smooth loop."""
    pictures = [to_pil(a, scale) for a in to_uint8(frames)]
    if bounce and len(pictures) > 2:
        pictures = pictures + pictures[-2:0:-1]
    buf = io.BytesIO()
    pictures[0].save(buf, format="GIF", save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0)
    return buf.getvalue()


def upscale_factor(height: int, target: int = 160) -> int:
    """An integer zoom that makes an image about `target` pixels tall (8x8 digits need 20x)."""
    return max(1, round(target / height))


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def data_uris(images: torch.Tensor, scale: int = 1) -> list[str]:
    """Each (C, H, W) image as a PNG data: URI, for pictures placed inside a plotly figure."""
    return [png_data_uri(png_bytes(a, scale)) for a in to_uint8(images)]


class ImageError(ValueError):
    """An uploaded picture that cannot be used; the message says why."""


MAX_UPLOAD_PIXELS = 4096 * 4096  # refuse larger pictures from their header, before decoding them


def load_image(data: bytes, shape: tuple[int, int, int], invert: bool | None = None) -> torch.Tensor:
    """An uploaded PNG/JPG/... as a (1, C, H, W) float tensor in [0, 1] for a model of `shape`.

    Checks the header before decoding (size limit, so a 10,000 x 10,000 picture is refused without
    allocating it), converts any mode (RGBA, palette, 16-bit, CMYK) to grey or RGB, centre-crops to
    a square and resizes. With invert=None a mostly light picture is inverted, because the datasets
    here draw light strokes on dark backgrounds (a digit photographed on paper is the reverse).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError("the file is empty")
    try:
        with warnings.catch_warnings():  # we apply our own, smaller size limit just below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageError(f"the picture is far too large (at most {MAX_UPLOAD_PIXELS:,} pixels)") from None
    except (UnidentifiedImageError, OSError):
        raise ImageError("not an image this app can read (PNG, JPEG, GIF, BMP, WebP, TIFF)") from None
    width, height = img.size
    if width * height > MAX_UPLOAD_PIXELS:
        raise ImageError(f"{width}×{height} pixels is too large (at most {MAX_UPLOAD_PIXELS:,} pixels); "
                         "shrink it first")
    channels, target_h, target_w = shape
    try:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grey: scale to 8 bits, not clip
            arr = np.asarray(img, dtype=np.float64)
            img = Image.fromarray((255 * (arr - arr.min()) / max(np.ptp(arr), 1)).astype(np.uint8))
        if img.mode in ("RGBA", "LA", "P", "PA"):  # flatten transparency onto black, like the datasets
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            img = Image.alpha_composite(background, rgba)
        img = img.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError) as exc:
        raise ImageError(f"the image could not be decoded ({exc})") from None
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((target_w, target_h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32).reshape(target_h, target_w, channels) / 255.0
    if invert or (invert is None and arr.mean() > 0.5):
        arr = 1.0 - arr
    return torch.from_numpy(arr.transpose(2, 0, 1).copy()).unsqueeze(0)
