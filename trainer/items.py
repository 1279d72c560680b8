"""The project's items as one uint8 tensor, fetched in pages and extended as imports add items."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from trainer.client import ApiClient

log = logging.getLogger(__name__)


@dataclass
class ItemTable:
    ids: np.ndarray  # (N,) int64, ascending
    images: Tensor  # (N, C, H, W) uint8; row i is item ids[i]

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return len(self.ids)

    def extend(self, ids: np.ndarray, images_nhwc: np.ndarray) -> int:
        """Append items with ids above the current last one; returns how many were added."""
        if len(ids) == 0:
            return 0
        keep = ids > (self.ids[-1] if len(self.ids) else -1)
        if not keep.any():
            return 0
        new = torch.from_numpy(np.ascontiguousarray(images_nhwc[keep])).permute(0, 3, 1, 2).contiguous()
        if len(self.ids) and new.shape[1:] != self.images.shape[1:]:
            raise ValueError(f"new items {tuple(new.shape)} do not match the table {tuple(self.images.shape)}")
        self.ids = np.concatenate([self.ids, ids[keep].astype(np.int64)])
        self.images = new if self.images.numel() == 0 else torch.cat([self.images, new])
        return int(keep.sum())

    @classmethod
    def empty(cls) -> ItemTable:
        return cls(np.zeros(0, dtype=np.int64), torch.zeros(0, 0, 0, 0, dtype=torch.uint8))


def fetch_items(client: ApiClient, project: int, table: ItemTable, size: int | None, page: int = 2048) -> int:
    """Fetch every item after the table's last one into it; returns how many were added."""
    after: int | None = int(table.ids[-1]) if len(table.ids) else None
    added = 0
    while True:
        got = client.get_pixels(project, after, page, size)
        added += table.extend(got.ids, got.images)
        if got.next_after is None or len(got.ids) == 0:
            break
        after = got.next_after
    if added:
        log.info("items: %d new, %d in all, images %s", added, len(table), tuple(table.images.shape[1:]))
    return added
