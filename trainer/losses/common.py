"""What every graph loss shares: the result type, the module form and the checks on its inputs.

A batch holds two branches of nodes, ``z_a`` (n_a, D) and ``z_b`` (n_b, D), and a signed
weight matrix ``graph`` (n_a, n_b) between them: ``graph[i, j] > 0`` says row i of A and row j
of B are the same kind (weight = confidence), ``< 0`` says they differ, ``0`` says unknown.
``graph=None`` is the augmentation graph: row i of A and row i of B are two views of one
image (the identity matrix), which makes every loss its standard two-view form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class LossTerms:
    """``total`` is what gets back-propagated; ``terms`` are its unweighted parts, for logging."""

    total: Tensor
    terms: dict[str, Tensor]

    def as_floats(self) -> dict[str, float]:
        out = {name: float(value.detach()) for name, value in self.terms.items()}
        out["loss"] = float(self.total.detach())
        return out


class GraphLoss(nn.Module):
    """The module form of a pure loss function (lightly's layout: the maths in the function, the
    settings on a thin module), called alike for every loss.

    Losses with ``uses_negatives`` also read the within-branch graphs ``graph_aa``/``graph_bb``;
    the others accept and ignore them (the engine has them built only for the former).
    """

    uses_negatives: ClassVar[bool] = False
    __call__: Callable[..., LossTerms]  # nn.Module types it as returning Any

    def __init__(self, function: Callable[..., LossTerms], **settings: float) -> None:
        super().__init__()
        self.function = function
        self.settings = settings

    def forward(
        self,
        z_a: Tensor,
        z_b: Tensor,
        graph: Tensor | None = None,
        graph_aa: Tensor | None = None,
        graph_bb: Tensor | None = None,
    ) -> LossTerms:
        within = {"graph_aa": graph_aa, "graph_bb": graph_bb} if self.uses_negatives else {}
        return self.function(z_a, z_b, graph, **within, **self.settings)


def check_branches(z_a: Tensor, z_b: Tensor, min_rows: int = 1) -> None:
    if z_a.ndim != 2 or z_b.ndim != 2:
        raise ValueError(f"z_a and z_b must be 2-D (n, D); got z_a {tuple(z_a.shape)}, z_b {tuple(z_b.shape)}")
    if z_a.shape[1] != z_b.shape[1]:
        raise ValueError(f"z_a and z_b must have the same width D; got z_a {tuple(z_a.shape)}, z_b {tuple(z_b.shape)}")
    if z_a.shape[0] < min_rows or z_b.shape[0] < min_rows:
        raise ValueError(
            f"each branch needs at least {min_rows} rows; got z_a {tuple(z_a.shape)}, z_b {tuple(z_b.shape)}"
        )


def cross_graph(z_a: Tensor, z_b: Tensor, graph: Tensor | None) -> Tensor:
    """The (n_a, n_b) signed graph, building the identity when ``graph`` is None."""
    n_a, n_b = z_a.shape[0], z_b.shape[0]
    if graph is None:
        if n_a != n_b:
            raise ValueError(
                "graph=None means the augmentation graph (row i of A ~ row i of B), which needs "
                f"n_a == n_b; got z_a {tuple(z_a.shape)}, z_b {tuple(z_b.shape)}"
            )
        return torch.eye(n_a, dtype=z_a.dtype, device=z_a.device)
    return check_graph(graph, n_a, n_b, "graph").to(dtype=z_a.dtype)


def check_graph(graph: Tensor, n_rows: int, n_cols: int, name: str) -> Tensor:
    if graph.shape != (n_rows, n_cols):
        raise ValueError(f"{name} must be ({n_rows}, {n_cols}) to match the branches; got {tuple(graph.shape)}")
    return graph


def off_diagonal(x: Tensor) -> Tensor:
    """Flattened off-diagonal entries of a square matrix."""
    n, m = x.shape
    if n != m:
        raise ValueError(f"off_diagonal needs a square matrix; got {tuple(x.shape)}")
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()
