"""What a research run measures, as a tag: the labelling core's replay fingerprint plus a trainer
replay. Results with the same tag came from the same behaviour, whatever the source bytes; a
refactor keeps the tag, a change of what PAL asks, exports or learns changes it.

- ``pal.core.replay.fingerprint()``: the grids each oracle chooses and the labels the export gives
  on a fixed stream of noisy answers (about 15 s).
- :func:`trainer_replay`: the harness's trainer (the ``mlp`` backbone, the VICReg graph loss, the
  batching of human and augmentation pairs) trained a few steps on seeded images and a fixed edge
  feed; the hash of the vectors it would publish (about 1 s).
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from pal.core.edges import EdgeKind, EdgeRecord


def trainer_replay(seed: int = 0, steps: int = 12) -> str:
    """A 12-hex-digit hash of the vectors the trainer publishes after ``steps`` steps."""
    import torch

    from trainer.config import TrainConfig
    from trainer.engine import Engine
    from trainer.items import ItemTable
    from trainer.loop import train_steps

    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 4, size=96)
    centres = rng.integers(0, 256, size=(4, 1, 16, 16))
    images = np.clip(centres[kinds] + rng.normal(0, 40, size=(96, 1, 16, 16)), 0, 255).astype(np.uint8)
    items = ItemTable(np.arange(1, 97, dtype=np.int64), torch.from_numpy(images))
    rows: list[EdgeRecord] = []
    for n in range(1, 200):
        a, b = (int(x) for x in rng.choice(96, size=2, replace=False))
        rows.append(EdgeRecord(n, a + 1, b + 1, 1 if kinds[a] == kinds[b] else -1, annotator_id=n % 3))
    rows.append(EdgeRecord(200, 0, 0, 0, kind=EdgeKind.RETRACT, retracts_id=7))
    rows.append(EdgeRecord(201, 1, 2, 1 if kinds[0] == kinds[1] else -1, 5.0, EdgeKind.KNOWN))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        config = TrainConfig(server="", token="", project=1, backbone="mlp", batch_size=32, lr=1e-3, seed=seed,
                             device="cpu", warmup_steps=4, loss="vicreg")
        engine = Engine(config, items)
        engine.consume(rows, "0:201")
        train_steps(engine, steps)
        vectors = engine.embed_all()
    finally:
        torch.set_num_threads(threads)
    return hashlib.sha256(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).hexdigest()[:12]


@functools.cache
def _behaviour() -> tuple[tuple[str, str], ...]:
    from pal.core.replay import fingerprint

    return (*fingerprint().items(), ("trainer", trainer_replay()))


def behaviour() -> dict[str, str]:
    """``{"replay": ..., "active": ..., "random": ..., "uncertainty": ..., "trainer": ...}``, computed
    once per process; the server a run starts runs the same tree."""
    return dict(_behaviour())


if __name__ == "__main__":
    import json

    print(json.dumps(behaviour(), indent=1))
