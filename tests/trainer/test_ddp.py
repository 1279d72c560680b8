"""Two CPU processes over gloo, as ``torchrun --nproc-per-node 2`` would start them."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from tests.trainer.trainer_fakes import FakeServer, answer, blob_images
from trainer import ddp
from trainer.config import TrainConfig
from trainer.engine import Engine
from trainer.items import ItemTable
from trainer.loop import run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    cfg = TrainConfig(
        project=1,
        batch_size=4,
        proj_dim=8,
        device="cpu",
        publish_every=2,
        max_steps=2,
        log_every=1,
        warmup_steps=1,
    )
    ctx = ddp.setup("cpu")
    items = ItemTable.empty()
    items.extend(np.arange(100, 132), blob_images(n=32))
    engine = Engine(cfg, items, ctx)
    losses = [float(engine.train_step().total) for _ in range(2)]
    torch.save(engine.model.state_dict(), Path(out) / f"model{rank}.pt")

    server = FakeServer(images=blob_images(n=32), edges=[answer(1, 100, 104, 1), answer(2, 101, 105, -1)])
    result = run(cfg, server.client() if rank == 0 else None)
    report = {
        "losses": losses,
        "step": result.step,
        "cursor": result.cursor,
        "consumed": result.edges_consumed,
        "uploads": len(server.uploads),
        "broadcast": ctx.rank,
    }
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))


@pytest.mark.slow
def test_ddp_two_ranks_share_weights_graph_and_cursor(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    m0, m1 = (torch.load(tmp_path / f"model{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(m0[k], m1[k]) for k in m0 if "running" not in k and "num_batches" not in k)
    assert r0["losses"] != r1["losses"]  # each rank drew its own batches
    assert (r0["step"], r0["cursor"], r0["consumed"]) == (r1["step"], r1["cursor"], r1["consumed"]) == (2, "0:2", 2)
    assert (r0["uploads"], r1["uploads"]) == (1, 0)  # only rank 0 talks to the server
