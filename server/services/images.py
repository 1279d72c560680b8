"""Decoding, hashing and resizing images, guarded against decompression bombs."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from server.config import get_settings


class BadImage(ValueError):
    """An input that is not a readable image; the message says why."""


@dataclass(frozen=True)
class DecodedImage:
    data: bytes  # what PAL stores and serves: the original PNG/JPEG/WebP bytes, else a PNG
    mime: str
    sha256: str  # of the decoded pixels, so one picture saved twice in two formats is one item
    width: int
    height: int
    channels: int


_KEEP_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def _pixels_hash(img: Image.Image) -> str:
    h = hashlib.sha256(f"{img.mode}:{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def _normalise_mode(img: Image.Image) -> Image.Image:
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in ("1", "I;16", "I", "F"):
        return img.convert("L")
    return img.convert("RGB")


def decode_bytes(raw: bytes) -> DecodedImage:
    Image.MAX_IMAGE_PIXELS = get_settings().max_image_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as probe:
                fmt = probe.format or ""
                probe.verify()
            opened = Image.open(io.BytesIO(raw))
            opened.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"image too large (decompression bomb guard): more pixels than PAL_MAX_IMAGE_PIXELS allows "
                       f"({Image.MAX_IMAGE_PIXELS:,}); raise that setting to import it") from exc
    except UnidentifiedImageError as exc:
        raise BadImage("not an image file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"corrupt image: {exc}") from exc
    img = _normalise_mode(opened)
    if fmt in _KEEP_FORMATS:
        data, mime = raw, _KEEP_FORMATS[fmt]
    else:
        data, mime = encode_png(img), "image/png"
    return DecodedImage(
        data=data, mime=mime, sha256=_pixels_hash(img), width=img.width, height=img.height,
        channels=1 if img.mode == "L" else 3,
    )


def encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def decode_array(array: np.ndarray) -> DecodedImage:
    """An (H, W) or (H, W, 3) uint8 array from an .npz import."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise BadImage(f"want uint8 (H, W) or (H, W, 3), got {array.dtype} {array.shape}")
    img = Image.fromarray(array, mode="L" if array.ndim == 2 else "RGB")
    data = encode_png(img)
    return DecodedImage(
        data=data, mime="image/png", sha256=_pixels_hash(img), width=img.width, height=img.height,
        channels=1 if array.ndim == 2 else 3,
    )


def load_pixels(data: bytes, *, size: int | None, channels: int) -> np.ndarray:
    """Stored bytes -> uint8 (H, W, C), resized to size x size when asked."""
    with Image.open(io.BytesIO(data)) as opened:
        img = opened.convert("L" if channels == 1 else "RGB")
        if size is not None and (img.width, img.height) != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def thumbnail(data: bytes, *, max_side: int) -> bytes:
    with Image.open(io.BytesIO(data)) as opened:
        if max(opened.width, opened.height) <= max_side:
            return data
        img = _normalise_mode(opened)
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return encode_png(img)
