"""SimCLR's NT-Xent in graph form (Chen et al., ICML 2020), as PAL uses it.

Temperature tau defaults to 0.5 (lightly's NTXentLoss default; the SimCLR paper uses 0.1-0.2
at large batch): pass it explicitly when it matters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.losses.common import GraphLoss, LossTerms, check_branches, check_graph, cross_graph


def pooled_graph(cross: Tensor, graph_aa: Tensor | None, graph_bb: Tensor | None) -> Tensor:
    """The (n_a + n_b)^2 signed graph over all nodes, self-pairs zeroed."""
    n_a, n_b = cross.shape
    aa = cross.new_zeros(n_a, n_a) if graph_aa is None else check_graph(graph_aa, n_a, n_a, "graph_aa")
    bb = cross.new_zeros(n_b, n_b) if graph_bb is None else check_graph(graph_bb, n_b, n_b, "graph_bb")
    top = torch.cat([aa.to(cross.dtype), cross], dim=1)  # (n_a, n_a + n_b)
    bottom = torch.cat([cross.T, bb.to(cross.dtype)], dim=1)  # (n_b, n_a + n_b)
    g = torch.cat([top, bottom], dim=0)  # (M, M)
    return g.fill_diagonal_(0.0)


def nt_xent_loss(
    z_a: Tensor,
    z_b: Tensor,
    graph: Tensor | None = None,
    *,
    graph_aa: Tensor | None = None,
    graph_bb: Tensor | None = None,
    temperature: float = 0.5,
    negative_weight: float = 1.0,
) -> LossTerms:
    """NT-Xent over all M = n_a + n_b nodes of the batch, in solo-learn's mask form.

    Nodes are L2-normalised, ``s_ab = cos(z_a, z_b) / tau``, self-pairs removed. For every
    anchor a that has at least one positive:

        l_a = -log( sum_{p in P(a)} G_ap exp(s_ap) / sum_{b != a} d_ab exp(s_ab) )

    and the loss is the plain mean of l_a over those anchors. This is the mask form (one log
    of a sum over positives), not SupCon's mean of per-positive log-probabilities: the two
    differ when |P(a)| > 1 and agree with one positive per anchor, where both equal lightly's
    NTXentLoss (half of google-research/simclr's value, which sums the two directions).

    Denominator weights: ``d_ab = 1`` for every other node (unknown pairs and positives stay
    in it, as in SimCLR); a known negative of weight |G_ab| counts
    ``1 + (negative_weight - 1) * |G_ab|`` times, so ``negative_weight > 1`` up-weights the
    negatives humans asserted and 1.0 is plain SimCLR. With positive weights <= 1 the loss
    is >= 0.

    Args:
        z_a: (n_a, D) branch A.
        z_b: (n_b, D) branch B.
        graph: (n_a, n_b) signed cross-branch weights; None is the augmentation graph.
        graph_aa: optional (n_a, n_a) signed weights among A's rows (diagonal ignored).
        graph_bb: optional (n_b, n_b) signed weights among B's rows (diagonal ignored).
        temperature: tau.
        negative_weight: how many times a fully trusted known negative counts in a denominator.

    Returns:
        LossTerms with ``nt_xent`` (equal to the total) and ``positive_cosine`` (mean cosine
        over positive pairs, a collapse/alignment gauge without gradient use).
    """
    check_branches(z_a, z_b)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    g = pooled_graph(cross_graph(z_a, z_b, graph), graph_aa, graph_bb)  # (M, M)
    z = F.normalize(torch.cat([z_a, z_b], dim=0), dim=1)  # (M, D)
    cos = z @ z.T  # (M, M)
    logits = cos / temperature  # (M, M)

    positive = g.clamp(min=0)  # (M, M)
    known_negative = (-g).clamp(min=0)  # (M, M)
    denom_weight = 1.0 + (negative_weight - 1.0) * known_negative  # (M, M)
    denom_weight.fill_diagonal_(0.0)

    anchors = positive.sum(dim=1) > 0  # (M,)
    if not bool(anchors.any()):
        zero = z.sum() * 0.0
        return LossTerms(total=zero, terms={"nt_xent": zero, "positive_cosine": zero.detach()})
    # log(0) = -inf drops non-positives from the numerator and self-pairs from the denominator;
    # rows without a positive are removed first, since an all -inf row has a NaN gradient.
    logits = logits[anchors]  # (A, M)
    log_num = torch.logsumexp(logits + positive[anchors].log(), dim=1)  # (A,)
    log_den = torch.logsumexp(logits + denom_weight[anchors].log(), dim=1)  # (A,)
    loss = (log_den - log_num).mean()
    pos_cos = (cos * (positive > 0)).sum().detach() / (positive > 0).sum()
    return LossTerms(total=loss, terms={"nt_xent": loss, "positive_cosine": pos_cos})


class NTXentLoss(GraphLoss):
    """Module form of :func:`nt_xent_loss`."""

    uses_negatives = True

    def __init__(self, temperature: float = 0.5, negative_weight: float = 1.0) -> None:
        super().__init__(nt_xent_loss, temperature=temperature, negative_weight=negative_weight)
