"""Wire formats shared by the server and the trainer (the trainer never imports ``server``).

- Edge feed: JSON pages of :class:`pal.core.edges.EdgeRecord` with an opaque ``next_cursor``.
- Pixels in bulk: an ``.npz`` body with ``ids`` int64 (n,) and ``images`` uint8 (n, H, W, C).
- Embedding upload: multipart with ``meta`` (JSON), ``item_ids`` (.npy int64 (N,)) and
  ``vectors`` (.npy float32 (N, D)); rows of ``vectors`` follow ``item_ids``.
"""

from __future__ import annotations

import io
import math
from typing import IO

import numpy as np

NPZ_MEDIA_TYPE = "application/x-npz"
NPY_MEDIA_TYPE = "application/x-npy"
NEXT_AFTER_HEADER = "X-Next-After"
START_CURSOR = "0:0"


def parse_cursor(cursor: str) -> tuple[int, int]:
    """``"<txid>:<edge id>"``: the last delivered edge's commit watermark and id."""
    txid, sep, edge_id = cursor.partition(":")
    if not sep:
        raise ValueError(f"cursor must look like '<txid>:<id>', got {cursor!r}")
    tx, eid = int(txid), int(edge_id)
    if tx < 0 or eid < 0:
        raise ValueError(f"cursor parts must be non-negative, got {cursor!r}")
    return tx, eid


def format_cursor(txid: int, edge_id: int) -> str:
    return f"{txid}:{edge_id}"


def encode_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def read_npy_header(fp: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header, reading nothing past it (ValueError if there is none)."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    else:
        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    return tuple(int(n) for n in shape), dtype


def npy_nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def decode_npy(data: bytes) -> np.ndarray:
    """ValueError, before anything is allocated, when ``data`` is empty, not a .npy, or holds fewer
    bytes than its header declares (a few bytes declaring a huge shape)."""
    buf = io.BytesIO(data)
    shape, dtype = read_npy_header(buf)
    declared, held = npy_nbytes(shape, dtype), len(data) - buf.tell()
    if declared > held:
        raise ValueError(f"the header declares {dtype} {shape} ({declared} bytes) but {held} bytes follow it")
    buf.seek(0)
    arr: np.ndarray = np.load(buf, allow_pickle=False)
    return arr


def encode_pixels(ids: np.ndarray, images: np.ndarray) -> bytes:
    if images.ndim != 4 or images.dtype != np.uint8 or len(ids) != len(images):
        raise ValueError(f"want ids (n,) and uint8 images (n, H, W, C); got {ids.shape} and {images.shape}")
    buf = io.BytesIO()
    np.savez(buf, ids=ids.astype(np.int64), images=images)
    return buf.getvalue()


def decode_pixels(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return npz["ids"], npz["images"]
