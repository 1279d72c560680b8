"""Frozen item features: computed once per item, cached on disk, the input of a small head.

Two sources: a pretrained backbone (:class:`BackboneFeatures`: batched, under
``torch.inference_mode``, with a progress line) and the server's current embedding version
(:class:`ServerFeatures`, ``--backbone features``).

The disk cache (``--features-cache``; default ``$PAL_DATA_DIR/features``) holds one file per
source id (model, weights, input size, served image size and channels for a backbone): item ids
and their vectors. Items already in the file are read back, only new ones are computed, and a
different model or weights, or another image size, is another file, so it is computed afresh.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.transforms import v2

from trainer.augment import Normalization
from trainer.client import ApiClient, ApiError
from trainer.pretrained import BackboneSetupError, InputSpec, default_data_dir

log = logging.getLogger("trainer")


class FeatureSource(Protocol):
    id: str  # what the vectors depend on: the cache file's key
    computes_new_items: bool  # False: the vectors are read once (the cache then stands for the source)

    def compute(self, ids: np.ndarray, images: Tensor) -> Tensor:
        """(M, dim) float32 features of items ``ids`` whose uint8 pixels are ``images`` (M, C, H, W)."""
        ...


def default_features_cache() -> Path:
    return default_data_dir() / "features"


class BackboneFeatures:
    """A frozen network's pooled features of resized, normalised RGB images."""

    computes_new_items = True

    def __init__(
        self,
        net: nn.Module,
        dim: int,
        spec: InputSpec,
        label: str,
        image_shape: tuple[int, ...],
        device: torch.device,
        batch_size: int = 64,
    ) -> None:
        self.net = net.to(device).eval()
        self.dim, self.spec, self.device, self.batch_size = dim, spec, device, batch_size
        self.normalization = Normalization(spec.mean, spec.std)
        shape = "x".join(str(s) for s in image_shape)
        self.id = f"{label}|input {spec.size}|pixels {shape}"

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8 (B, C, H, W) -> normalised float32 (B, 3, size, size); grayscale is repeated."""
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[-2:] != (self.spec.size, self.spec.size):
            images = v2.functional.resize(images, [self.spec.size, self.spec.size], antialias=True)
        return self.normalization.apply(images.to(torch.float32) / 255.0)

    @torch.inference_mode()
    def compute(self, ids: np.ndarray, images: Tensor) -> Tensor:
        out: list[Tensor] = []
        started = last_log = time.perf_counter()
        for start in range(0, len(images), self.batch_size):
            x = self.preprocess(images[start : start + self.batch_size]).to(self.device, non_blocking=True)
            out.append(self.net(x).float().flatten(1).cpu())
            done, now = start + len(x), time.perf_counter()
            if now - last_log >= 10.0 or done == len(images) or start == 0:
                rate = done / max(now - started, 1e-9)
                log.info("features: %d / %d items (%.1f img/s)", done, len(images), rate)
                last_log = now
        return torch.cat(out) if out else torch.zeros(0, self.dim)


class ServerFeatures:
    """The vectors of the server's current embedding version, read once per process.

    An item the version lacks (imported after it) gets a zero vector and a warning. The vectors
    are read once: once the features cache holds them, a restart reads the cache, not the server
    (whose current version is then the trainer's own output)."""

    computes_new_items = False

    def __init__(self, client: ApiClient | None, project: int, server: str) -> None:
        self.client, self.project = client, project
        self.id = f"server {server} project {project} current embedding"
        self._table: tuple[np.ndarray, np.ndarray] | None = None

    def _vectors(self) -> tuple[np.ndarray, np.ndarray]:
        if self._table is None:
            if self.client is None:
                raise RuntimeError("only the rank with a client reads the server's embedding")
            try:
                version, ids, vectors = self.client.get_current_embedding(self.project)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                raise BackboneSetupError(
                    f"--backbone features trains on the project's current embedding, and project {self.project} "
                    "has none yet: train once with another backbone first"
                ) from exc
            log.info("features: embedding version %s of the server, %d items x %d", version, *vectors.shape)
            self._table = (ids, vectors)
        return self._table

    def compute(self, ids: np.ndarray, images: Tensor) -> Tensor:
        del images
        known, vectors = self._vectors()
        order = np.argsort(known)
        pos = np.clip(np.searchsorted(known[order], ids), 0, max(len(known) - 1, 0))
        found = (known[order][pos] == ids) if len(known) else np.zeros(len(ids), dtype=bool)
        out = np.zeros((len(ids), vectors.shape[1]), dtype=np.float32)
        out[found] = vectors[order][pos[found]]
        if not found.all():
            log.warning("features: %d items are not in the server's embedding; they get zero vectors", (~found).sum())
        return torch.from_numpy(out)


def cache_file(cache: Path, source_id: str) -> Path:
    return cache / f"{hashlib.sha256(source_id.encode()).hexdigest()[:20]}.pt"


def _read_cache(path: Path, source_id: str) -> dict[int, Tensor]:
    if not path.is_file():
        return {}
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("id") != source_id:  # a hash collision, or a file from elsewhere
        return {}
    return dict(zip(saved["ids"].tolist(), saved["vectors"], strict=True))


def _write_cache(path: Path, source_id: str, ids: np.ndarray, vectors: Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"id": source_id, "ids": torch.from_numpy(ids.astype(np.int64)), "vectors": vectors}, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def item_features(
    source: FeatureSource,
    ids: np.ndarray,
    images: Tensor,
    cache: Path | None,
    previous: tuple[np.ndarray, Tensor] | None = None,
) -> Tensor:
    """(N, D) float32 features of the items, rows in ``ids`` order; the rows of the cache and of
    ``previous`` (ids and vectors this process already has) are reused.

    A source that reads its vectors once (``computes_new_items`` false) is not asked again once
    the cache has rows: items it lacks get zero vectors."""
    path = cache_file(cache, source.id) if cache is not None else None
    cached = _read_cache(path, source.id) if path is not None else {}
    if previous is not None:
        cached.update(zip(previous[0].tolist(), previous[1], strict=True))
    hit = np.array([i for i, item in enumerate(ids.tolist()) if item in cached], dtype=np.int64)
    missing = np.setdiff1d(np.arange(len(ids)), hit)
    if len(hit):
        log.info("features: %d of %d items already computed (cache %s)", len(hit), len(ids), path)
    new: Tensor | None = None
    if len(missing) and (source.computes_new_items or not cached):
        new = source.compute(ids[missing], images[torch.from_numpy(missing)])
    dim = int(new.shape[1]) if new is not None else int(next(iter(cached.values())).shape[0])
    out = torch.zeros(len(ids), dim)
    if len(hit):
        out[torch.from_numpy(hit)] = torch.stack([cached[int(ids[i])] for i in hit]).float()
    if new is not None:
        out[torch.from_numpy(missing)] = new
        if path is not None:
            _write_cache(path, source.id, ids, out)
    elif len(missing):
        log.warning("features: %d new items have no vector in %s; they get zero vectors", len(missing), path)
    return out
