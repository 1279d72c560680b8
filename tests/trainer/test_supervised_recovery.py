"""With the label graph G = Y Y^T the VICReg graph loss recovers the classes; SSL alone does not.

Free embeddings (a learnable N x K table, no encoder) stand for a model rich enough to
interpolate: with K >= C the minimisers of the graph loss are spectral embeddings of G, which
put each class on its own point, so a linear probe separates them perfectly.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.losses import vicreg_loss

N, C = 200, 4


def linear_probe_accuracy(z: Tensor, y: Tensor, n_classes: int) -> float:
    """Least-squares linear classifier with a bias, scored on the points it was fitted on."""
    x = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], dim=1)  # (N, K + 1)
    w = torch.linalg.lstsq(x, F.one_hot(y, n_classes).to(z.dtype)).solution  # (K + 1, C)
    return float(((x @ w).argmax(dim=1) == y).float().mean())


def train_free_embeddings(graph: Tensor, k: int, noise: float, steps: int = 300, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    table = torch.nn.Parameter(torch.randn(N, k, generator=gen))
    optimizer = torch.optim.Adam([table], lr=0.05)
    for _ in range(steps):
        # Branch B is a noisy copy: the free-embedding analogue of a second augmented view.
        view = table + noise * torch.randn(N, k, generator=gen)
        loss = vicreg_loss(table, view, graph).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return table.detach()


@pytest.mark.parametrize("k", [C, 2 * C])
def test_vicreg_label_graph_reaches_perfect_linear_probe(k: int) -> None:
    y = torch.arange(N) % C
    label_graph = (y[:, None] == y[None, :]).float()  # G = Y Y^T, (N, N)
    z = train_free_embeddings(label_graph, k, noise=0.0)
    assert linear_probe_accuracy(z, y, C) == 1.0


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_vicreg_augmentation_graph_alone_does_not_recover_classes(noise: float) -> None:
    y = torch.arange(N) % C
    z = train_free_embeddings(torch.eye(N), C, noise=noise)
    assert linear_probe_accuracy(z, y, C) < 0.9
