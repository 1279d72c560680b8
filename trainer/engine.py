"""The trainer's state and its three actions: a training step, embedding every item, a checkpoint.

:func:`trainer.loop.run` drives it; benchmarks and tests drive it directly, without a server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pal.core.edges import EdgeRecord
from pal.wire import START_CURSOR
from trainer import ddp
from trainer.augment import Augment, Normalization, Preprocess
from trainer.backbones import EmbeddingModel, build_model
from trainer.batching import (
    GraphSnapshot,
    MixSettings,
    PairSampler,
    new_replica,
    replica_from_state,
    replica_state,
    snapshot,
)
from trainer.checkpoint import FORMAT
from trainer.config import TrainConfig
from trainer.items import ItemTable
from trainer.losses import GraphLoss, LossTerms, build_loss


def _warmup(warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0

    return factor


def _loss_kwargs(config: TrainConfig) -> dict[str, float]:
    if config.loss.lower() in ("simclr", "nt_xent"):
        return {"temperature": config.temperature, "negative_weight": config.negative_weight}
    return {}


class Engine:
    """Model, optimizer, schedule, edge store and sampler of one trainer process."""

    def __init__(
        self,
        config: TrainConfig,
        items: ItemTable,
        ctx: ddp.DistContext | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        if len(items) < 2:
            raise ValueError(f"need at least 2 items to train; the project has {len(items)}")
        self.config = config
        self.ctx = ctx or ddp.DistContext(0, 1, 0, ddp.pick_device(config.device))
        self.device = self.ctx.device
        self.items = items
        self.size = self._input_size()
        self.on_cuda = self.device.type == "cuda"

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # the same weights on every rank and every fresh start
            self.model = self._build_model()
        self.model.to(self.device)
        if self.on_cuda:
            # Convolutions run faster in NHWC on tensor cores; CPU kernels gain nothing here.
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.train_model = ddp.wrap(self.model, self.ctx)
        self.loss_fn: GraphLoss = build_loss(config.loss, **_loss_kwargs(config))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _warmup(config.warmup_steps))
        self.amp_dtype = torch.bfloat16 if self.on_cuda and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.on_cuda and config.amp and not self._bf16)

        self.store = new_replica()
        self.step = 0
        self.cursor = START_CURSOR
        if checkpoint is not None:
            norm = Normalization(tuple(checkpoint["normalization"][0]), tuple(checkpoint["normalization"][1]))
            self._restore(checkpoint)
        else:
            norm = self._initial_normalization()
        self.normalization = norm
        self.augment = Augment(items.channels, self.size, norm)
        self.preprocess = Preprocess(self.size, norm)
        self.sampler = PairSampler(len(items), config.batch_size, self._mix(), seed=config.seed)
        self.generator = torch.Generator()
        self.images = self._device_images()
        self.snap: GraphSnapshot = snapshot(self.store, items.ids)
        self.reseed()

    @property
    def _bf16(self) -> bool:
        return self.amp_dtype == torch.bfloat16

    def _mix(self) -> MixSettings:
        c = self.config
        return MixSettings(c.human_fraction, c.closure_fraction, c.negative_fraction)

    def _input_size(self) -> int:
        return self.config.image_size or int(self.items.images.shape[-1])

    def _build_model(self) -> EmbeddingModel:
        """Called under the seeded RNG: the same weights on every rank and every fresh start."""
        return build_model(self.config.backbone, self.items.channels, self.size, proj_dim=self.config.proj_dim)

    def _initial_normalization(self) -> Normalization:
        return Normalization.from_images(self.items.images)

    def _device_images(self) -> Tensor:
        # Keep the uint8 table on the GPU when it fits comfortably: augmentation then runs there.
        fits = self.items.images.nbytes < 2 * 1024**3
        return self.items.images.to(self.device) if self.on_cuda and fits else self.items.images

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.on_cuda and self.config.amp:
            with torch.autocast("cuda", dtype=self.amp_dtype):
                yield
        else:
            yield

    # --- the graph ---------------------------------------------------------------------------

    def reseed(self) -> None:
        """Random state as a function of (seed, rank, step): a resumed run draws what an
        uninterrupted one would have drawn, with nothing random in the checkpoint."""
        seeds = np.random.SeedSequence([self.config.seed, self.ctx.rank, self.step]).generate_state(2)
        self.sampler.rng = np.random.default_rng(int(seeds[0]))
        self.generator.manual_seed(int(seeds[1]))

    def consume(self, rows: list[EdgeRecord], cursor: str) -> int:
        """Fold feed rows into the graph and advance the cursor; returns the number of new rows."""
        new = self.store.apply(rows)
        self.cursor = cursor
        if new:
            self.refresh_graph()
        return new

    def items_added(self) -> None:
        """Call after ``self.items`` grew: new rows become samplable and edges to them usable."""
        self.sampler.n_items = len(self.items)
        self.images = self._device_images()
        self.refresh_graph()

    def refresh_graph(self) -> None:
        self.snap = snapshot(self.store, self.items.ids)

    # --- training ----------------------------------------------------------------------------

    def train_step(self) -> LossTerms:
        """One optimiser step on a freshly drawn batch; the returned terms stay on the device."""
        use_negatives = self.loss_fn.uses_negatives
        batch = self.sampler.sample(
            self.snap, use_negatives=use_negatives, within_branch=use_negatives, device=self.device
        )
        x = self._views(np.concatenate([batch.rows_a, batch.rows_b]))
        with self.autocast():
            z = self.train_model(x)  # (2n, proj_dim)
        z_a, z_b = z.float().chunk(2)  # the loss's statistics want float32 whatever autocast did

        terms = self.loss_fn(z_a, z_b, batch.graph, batch.graph_aa, batch.graph_bb)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms.total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return terms

    def _views(self, rows: np.ndarray) -> Tensor:
        """The model's training input for item positions ``rows``: one random view of each."""
        index = torch.from_numpy(rows).to(self.images.device)
        x = self.augment(self.images[index], self.generator).to(self.device, non_blocking=True)  # (2n, C, S, S)
        if self.on_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.inference_mode()
    def embed_all(self) -> np.ndarray:
        """(N, feature_dim) float32 backbone features of every item, rows in ``items.ids`` order."""
        self.model.eval()
        out = []
        for start in range(0, len(self.items), self.config.embed_batch_size):
            x = self._embed_input(start, start + self.config.embed_batch_size)
            with self.autocast():
                out.append(self.model.embed(x).float().cpu())
        self.model.train()
        return torch.cat(out).numpy()

    def _embed_input(self, start: int, stop: int) -> Tensor:
        """The model's deterministic input for item positions ``start:stop``."""
        x = self.preprocess(self.images[start:stop]).to(self.device, non_blocking=True)
        if self.on_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # --- checkpoints -------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "cursor": self.cursor,
            "edges_consumed": self.store.consumed,
            "edge_store": replica_state(self.store),
            "normalization": [list(self.normalization.mean), list(self.normalization.std)],
            "config": self.config.to_dict(),
        }

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint["config"]
        if saved.get("project") != self.config.project:
            raise ValueError(f"checkpoint is for project {saved.get('project')}, not {self.config.project}")
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.step = int(checkpoint["step"])
        self.cursor = str(checkpoint["cursor"])
        self.store = replica_from_state(checkpoint["edge_store"])
        if self.store.consumed != checkpoint["edges_consumed"]:
            raise ValueError(
                f"checkpoint is inconsistent: {checkpoint['edges_consumed']} edges consumed, "
                f"{self.store.consumed} row ids stored"
            )
