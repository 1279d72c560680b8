"""Wire formats shared by the server and the trainer (the trainer never imports ``server``).

- Edge feed: JSON pages of :class:`pal.core.edges.EdgeRecord` with an opaque ``next_cursor``.
- Pixels in bulk: an ``.npz`` body with ``ids`` int64 (n,) and ``images`` uint8 (n, H, W, C).
- Embedding upload: multipart with ``meta`` (JSON), ``item_ids`` (.npy int64 (N,)) and
  ``vectors`` (.npy float32 (N, D)); rows of ``vectors`` follow ``item_ids``.
"""

from __future__ import annotations

import io

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


def decode_npy(data: bytes) -> np.ndarray:
    arr: np.ndarray = np.load(io.BytesIO(data), allow_pickle=False)
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
