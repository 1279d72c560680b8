"""BarlowTwins in graph form (Zbontar et al., ICML 2021), as PAL uses it.

Default off-diagonal weight lambda = 0.0051 and batch-norm eps = 1e-5, the BarlowTwins paper's.
"""

from __future__ import annotations

from torch import Tensor

from trainer.losses.common import GraphLoss, LossTerms, check_branches, cross_graph, off_diagonal


def branch_batchnorm(z: Tensor, eps: float = 1e-5) -> Tensor:
    """Standardise each column of ONE branch: biased variance (1/N), no affine.

    This is ``nn.BatchNorm1d(D, affine=False)`` in training mode.
    """
    mean = z.mean(dim=0)
    var = z.var(dim=0, unbiased=False)
    return (z - mean) / (var + eps).sqrt()


def barlow_twins_loss(
    z_a: Tensor,
    z_b: Tensor,
    graph: Tensor | None = None,
    *,
    lambda_param: float = 0.0051,
    eps: float = 1e-5,
) -> LossTerms:
    """BarlowTwins over a two-branch batch and the graph between its branches.

    Each branch is batch-normalised SEPARATELY over its own rows (biased 1/N variance); then
    ``C = Z_A^T W Z_B / sum(W)`` with W the positive part of ``graph`` (negative edges count as
    0), and ``loss = sum_k (1 - C_kk)^2 + lambda * sum_{k != l} C_kl^2``. With W = I this is the
    paper's ``C = Z_A^T Z_B / n``.

    Args:
        z_a: (n_a, D) branch A.
        z_b: (n_b, D) branch B.
        graph: (n_a, n_b) signed edge weights; None is the augmentation graph (needs n_a == n_b).

    Returns:
        LossTerms with ``on_diagonal`` and ``off_diagonal`` (the latter before lambda).
    """
    check_branches(z_a, z_b, min_rows=2)
    w = cross_graph(z_a, z_b, graph).clamp(min=0)  # (n_a, n_b)
    total_weight = w.sum()
    if total_weight <= 0:
        raise ValueError(f"BarlowTwins needs at least one positive edge; graph {tuple(w.shape)} has none")
    za, zb = branch_batchnorm(z_a, eps), branch_batchnorm(z_b, eps)  # (n_a, D), (n_b, D)
    c = za.T @ (w @ zb) / total_weight  # (D, D)
    on_diag = (1.0 - c.diagonal()).pow(2).sum()
    off_diag = off_diagonal(c).pow(2).sum()
    total = on_diag + lambda_param * off_diag
    return LossTerms(total=total, terms={"on_diagonal": on_diag, "off_diagonal": off_diag})


class BarlowTwinsLoss(GraphLoss):
    """Module form of :func:`barlow_twins_loss`; ``graph_aa``/``graph_bb`` are accepted and unused."""

    def __init__(self, lambda_param: float = 0.0051, eps: float = 1e-5) -> None:
        super().__init__(barlow_twins_loss, lambda_param=lambda_param, eps=eps)
