"""The hidden ground truth of the simulated annotators: labels by item id, matched by pixels."""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from pal.simulate.api import API, raise_for
from pal.wire import NEXT_AFTER_HEADER, decode_pixels


def _pixel_key(img: np.ndarray) -> bytes:
    """Hash of an image's pixels; (H, W) and (H, W, 1) hash alike."""
    arr = np.ascontiguousarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return hashlib.blake2b(f"{arr.shape}".encode() + arr.tobytes(), digest_size=16).digest()


@dataclass(frozen=True)
class GroundTruth:
    """Hidden labels by item id (known to the simulator, never to the server's annotators)."""

    labels: Mapping[int, Hashable]
    unmatched: int = 0  # project items the source file does not contain

    def label(self, item_id: int) -> Hashable | None:
        return self.labels.get(int(item_id))

    @classmethod
    def from_npz(cls, admin: httpx.Client, project: int, path: Path) -> GroundTruth:
        """Match the project's items to the rows of ``path`` by their pixels (admin route)."""
        with np.load(path, allow_pickle=False) as npz:
            if "images" not in npz.files or "labels" not in npz.files:
                raise ValueError(f"{path} needs 'images' and 'labels' arrays; it has {sorted(npz.files)}")
            images, labels = npz["images"], npz["labels"]
        if len(images) != len(labels):
            raise ValueError(f"{path}: images {images.shape} and labels {labels.shape} differ in length")
        rows, unmatched = match_items(admin, project, images)
        truth: dict[int, Hashable] = {}
        for item_id, row in rows.items():
            value = labels[row]
            truth[item_id] = value.item() if hasattr(value, "item") else value
        return cls(labels=truth, unmatched=unmatched)


def match_items(admin: httpx.Client, project: int, images: np.ndarray, page: int = 5000) -> tuple[dict[int, int], int]:
    """``({item id: row of images}, number of unmatched items)``: the project's items found in ``images``
    (uint8 (N, H, W) or (N, H, W, 3)) by their pixels, read from the admin route ``items/pixels``.
    A picture that occurs twice in ``images`` maps to its first row."""
    index: dict[bytes, int] = {}
    for i in range(len(images)):
        index.setdefault(_pixel_key(images[i]), i)
    channels = 3 if images.ndim == 4 else 1
    rows: dict[int, int] = {}
    unmatched = 0
    after = 0
    while True:
        resp = admin.get(f"{API}/projects/{project}/items/pixels",
                         params={"after": after, "limit": page, "channels": channels})
        raise_for(resp)
        ids, pixels = decode_pixels(resp.content)
        for item_id, img in zip(ids.tolist(), pixels, strict=True):
            row = index.get(_pixel_key(img))
            if row is None:
                unmatched += 1
            else:
                rows[int(item_id)] = row
        nxt = resp.headers.get(NEXT_AFTER_HEADER, "")
        if not nxt or len(ids) == 0:
            return rows, unmatched
        after = int(nxt)

