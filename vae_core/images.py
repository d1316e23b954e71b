"""Pictures of tensors: image grids, PNG/GIF bytes, thumbnails. No Streamlit here."""
from __future__ import annotations

import base64
import io

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


def png_bytes(array: np.ndarray, scale: int = 1) -> bytes:
    buf = io.BytesIO()
    to_pil(array, scale).save(buf, format="PNG")
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


def data_uris(images: torch.Tensor, scale: int = 1) -> list[str]:
    """Each (C, H, W) image as a PNG data: URI, for pictures placed inside a plotly figure."""
    return ["data:image/png;base64," + base64.b64encode(png_bytes(a, scale)).decode() for a in to_uint8(images)]
