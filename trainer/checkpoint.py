"""Checkpoints: a plain dict written atomically, read back with ``weights_only=True``.

Contents: ``model``, ``optimizer``, ``scheduler`` (state dicts), ``step``, ``cursor`` (the
edge-feed cursor after the last consumed page), ``edges_consumed`` (feed rows consumed),
``edge_store`` (the in-memory human edges and consumed row ids, so a resumed trainer neither
re-counts nor skips an edge), ``normalization`` (per-channel mean/std fixed at the first
start), ``config`` (settings, without the token), ``format``; ``scaler`` when AMP scales losses.
Random state is not stored: the loop reseeds from (seed, rank, step) at every cycle, and a
checkpoint is only ever taken at a cycle boundary.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = 1
KEYS = frozenset(
    {
        "format",
        "model",
        "optimizer",
        "scheduler",
        "step",
        "cursor",
        "edges_consumed",
        "edge_store",
        "normalization",
        "config",
    }
)


def save_checkpoint(path: str | os.PathLike[str], checkpoint: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, fsync, then ``os.replace``.

    A crash leaves either the old checkpoint or the new one, never a torn file.
    """
    missing = KEYS - checkpoint.keys()
    if missing:
        raise ValueError(f"checkpoint lacks {sorted(missing)}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none yet."""
    target = Path(path)
    if not target.exists():
        return None
    checkpoint: dict[str, Any] = torch.load(target, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != FORMAT:
        raise ValueError(f"{target}: checkpoint format {checkpoint.get('format')!r}, this trainer reads {FORMAT}")
    return checkpoint
