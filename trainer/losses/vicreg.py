"""VICReg in graph form (Bardes, Ponce, LeCun, ICLR 2022), as PAL uses it.

Defaults are the VICReg paper's: invariance weight lambda = 25, variance weight mu = 25,
covariance weight nu = 1, eps = 1e-4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.losses.common import GraphLoss, LossTerms, check_branches, cross_graph, off_diagonal


def invariance_term(z_a: Tensor, z_b: Tensor, graph: Tensor) -> Tensor:
    """Weighted mean over positive edges (a, b) of ``||z_a - z_b||^2 / D``.

    Negative entries of ``graph`` are treated as 0 (VICReg has no use for them). With the
    identity graph this is ``F.mse_loss(z_a, z_b)``. No positive edge gives 0.
    """
    positive = graph.clamp(min=0)
    rows, cols = positive.nonzero(as_tuple=True)  # (E,), (E,)
    if rows.numel() == 0:
        return z_a.sum() * 0.0 + z_b.sum() * 0.0
    weight = positive[rows, cols]  # (E,)
    sq_dist = (z_a[rows] - z_b[cols]).pow(2).mean(dim=1)  # (E,): ||.||^2 / D
    return (weight * sq_dist).sum() / weight.sum()


def variance_term(z: Tensor, eps: float = 1e-4) -> Tensor:
    """``mean_k relu(1 - sqrt(Var_k(z) + eps))`` over the rows of ONE branch.

    Variance is unbiased (divides by N - 1), as in the VICReg reference code.
    """
    std = torch.sqrt(z.var(dim=0, unbiased=True) + eps)  # (D,)
    return F.relu(1.0 - std).mean()


def covariance_term(z: Tensor) -> Tensor:
    """``sum_{k != l} C_kl^2 / D`` with ``C = (z - mean)^T (z - mean) / (N - 1)`` of ONE branch."""
    n, d = z.shape
    centred = z - z.mean(dim=0)  # (N, D)
    cov = centred.T @ centred / (n - 1)  # (D, D)
    return off_diagonal(cov).pow(2).sum() / d


def vicreg_loss(
    z_a: Tensor,
    z_b: Tensor,
    graph: Tensor | None = None,
    *,
    lambda_param: float = 25.0,
    mu_param: float = 25.0,
    nu_param: float = 1.0,
    eps: float = 1e-4,
) -> LossTerms:
    """VICReg over a two-branch batch and the graph between its branches.

    total = lambda * invariance + mu * (v(Z_A) + v(Z_B)) / 2 + nu * (c(Z_A) + c(Z_B)).

    Variance and covariance are computed PER BRANCH (never on the pooled 2N rows), with unbiased
    1/(N-1) statistics: pooling gives a different number, and only per-branch statistics make
    the identity graph reproduce the VICReg paper's loss.

    Args:
        z_a: (n_a, D) branch A (view 1, or one end of each human edge).
        z_b: (n_b, D) branch B.
        graph: (n_a, n_b) signed edge weights; None is the augmentation graph (needs n_a == n_b).

    Returns:
        LossTerms with ``invariance``, ``variance`` (the branch average) and ``covariance``
        (the branch sum), unweighted.
    """
    check_branches(z_a, z_b, min_rows=2)
    w = cross_graph(z_a, z_b, graph)  # (n_a, n_b)
    inv = invariance_term(z_a, z_b, w)
    var = (variance_term(z_a, eps) + variance_term(z_b, eps)) / 2
    cov = covariance_term(z_a) + covariance_term(z_b)
    total = lambda_param * inv + mu_param * var + nu_param * cov
    return LossTerms(total=total, terms={"invariance": inv, "variance": var, "covariance": cov})


class VICRegLoss(GraphLoss):
    """Module form of :func:`vicreg_loss`; ``graph_aa``/``graph_bb`` are accepted and unused.

    VICReg only compares across branches; within-branch relations reach it through the
    cross-branch graph, since a closure-aware batch graph already links each row of A to
    every row of B of the same kind.
    """

    def __init__(
        self, lambda_param: float = 25.0, mu_param: float = 25.0, nu_param: float = 1.0, eps: float = 1e-4
    ) -> None:
        super().__init__(vicreg_loss, lambda_param=lambda_param, mu_param=mu_param, nu_param=nu_param, eps=eps)
