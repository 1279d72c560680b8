from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.trainer.trainer_fakes import FakeServer, blob_images


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # These tensors are tiny: a second OpenMP thread only adds synchronisation, which turns into
    # long stalls when other processes share the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fake_server() -> FakeServer:
    return FakeServer(images=blob_images())
