"""Graph-form losses: reductions to the standard two-view losses, and their properties.

The reference formulas below are transcribed from the named sources so that the tests do not
depend on those packages.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from trainer.losses import (
    BarlowTwinsLoss,
    NTXentLoss,
    VICRegLoss,
    barlow_twins_loss,
    build_loss,
    nt_xent_loss,
    vicreg_loss,
)
from trainer.losses.vicreg import covariance_term, variance_term

TOL = 1e-6


def _off_diagonal(x: Tensor) -> Tensor:
    # Transcribed from facebookresearch/vicreg main_vicreg.py (same helper in barlowtwins main.py).
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def reference_vicreg(
    x: Tensor, y: Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0
) -> Tensor:
    # Transcribed from facebookresearch/vicreg main_vicreg.py, VICReg.forward (one process, so
    # FullGatherLayer is the identity), after the projector.
    batch_size, num_features = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (batch_size - 1)
    cov_y = (y.T @ y) / (batch_size - 1)
    cov_loss = _off_diagonal(cov_x).pow_(2).sum().div(num_features) + _off_diagonal(cov_y).pow_(2).sum().div(
        num_features
    )
    return sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss


def reference_barlow_twins(z1: Tensor, z2: Tensor, lambd: float = 0.0051) -> Tensor:
    # Transcribed from facebookresearch/barlowtwins main.py, BarlowTwins.forward (one process,
    # so all_reduce is the identity); self.bn = nn.BatchNorm1d(sizes[-1], affine=False).
    batch_size = z1.shape[0]
    bn = nn.BatchNorm1d(z1.shape[1], affine=False).to(z1.dtype)
    c = bn(z1).T @ bn(z2)
    c.div_(batch_size)
    on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()
    off_diag = _off_diagonal(c).pow_(2).sum()
    return on_diag + lambd * off_diag


def reference_lightly_nt_xent(out0: Tensor, out1: Tensor, temperature: float = 0.5) -> Tensor:
    # Transcribed from lightly/loss/ntx_ent_loss.py, NTXentLoss.forward (no memory bank, one
    # process): cross-entropy over the other 2n - 1 nodes, the positive being the other view.
    batch_size = out0.shape[0]
    out0 = F.normalize(out0, dim=1)
    out1 = F.normalize(out1, dim=1)
    diag_mask = torch.eye(batch_size, dtype=torch.bool)
    logits_00 = torch.einsum("nc,mc->nm", out0, out0) / temperature
    logits_01 = torch.einsum("nc,mc->nm", out0, out1) / temperature
    logits_10 = torch.einsum("nc,mc->nm", out1, out0) / temperature
    logits_11 = torch.einsum("nc,mc->nm", out1, out1) / temperature
    logits_00 = logits_00[~diag_mask].view(batch_size, -1)
    logits_11 = logits_11[~diag_mask].view(batch_size, -1)
    logits_0100 = torch.cat([logits_01, logits_00], dim=1)
    logits_1011 = torch.cat([logits_10, logits_11], dim=1)
    logits = torch.cat([logits_0100, logits_1011], dim=0)
    labels = torch.arange(batch_size, dtype=torch.long).repeat(2)
    return F.cross_entropy(logits, labels)


def reference_solo_learn_simclr(z: Tensor, indexes: Tensor, temperature: float = 0.1) -> Tensor:
    # Transcribed from solo-learn solo/losses/simclr.py, simclr_loss_func (one process, so
    # gather is the identity): the mask form with any number of positives per anchor.
    z = F.normalize(z, dim=-1)
    sim = torch.exp(torch.einsum("if, jf -> ij", z, z) / temperature)
    indexes = indexes.unsqueeze(0)
    pos_mask = indexes.t() == indexes
    pos_mask.fill_diagonal_(0)
    neg_mask = indexes.t() != indexes
    pos = torch.sum(sim * pos_mask, 1)
    neg = torch.sum(sim * neg_mask, 1)
    return -(torch.mean(torch.log(pos / (pos + neg))))


def _views(n: int = 16, d: int = 8, seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z_a = torch.randn(n, d, generator=gen, dtype=torch.float64)
    z_b = z_a + 0.5 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    return z_a, z_b


def _signed_graph(n_a: int, n_b: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    sign = torch.randint(-1, 2, (n_a, n_b), generator=gen).to(torch.float64)
    sign[0, 0] = 1.0  # at least one positive edge
    return sign * torch.rand(n_a, n_b, generator=gen, dtype=torch.float64).clamp(min=0.1)


# --- reductions: the augmentation graph gives the standard two-view losses -------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vicreg_augmentation_graph_equals_reference(seed: int) -> None:
    z_a, z_b = _views(seed=seed)
    got = vicreg_loss(z_a, z_b).total
    assert torch.allclose(got, reference_vicreg(z_a, z_b), atol=TOL, rtol=0)


def test_vicreg_explicit_identity_graph_equals_reference() -> None:
    z_a, z_b = _views()
    got = vicreg_loss(z_a, z_b, torch.eye(16, dtype=torch.float64)).total
    assert torch.allclose(got, reference_vicreg(z_a, z_b), atol=TOL, rtol=0)


def test_vicreg_shuffled_rows_with_permuted_graph_equals_reference() -> None:
    z_a, z_b = _views()
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    graph = torch.eye(16, dtype=torch.float64)[:, perm]  # row i of A ~ row perm^-1(i) of B
    got = vicreg_loss(z_a, z_b[perm], graph).total
    assert torch.allclose(got, reference_vicreg(z_a, z_b), atol=TOL, rtol=0)


def test_vicreg_invariance_equals_mse_on_augmentation_graph() -> None:
    z_a, z_b = _views()
    assert torch.allclose(vicreg_loss(z_a, z_b).terms["invariance"], F.mse_loss(z_a, z_b), atol=TOL, rtol=0)


def test_vicreg_variance_uses_per_branch_statistics() -> None:
    # Two branches with different means: pooled statistics see the gap between them as spread.
    z_a, z_b = _views()
    z_b = 0.3 * z_b + 1.0
    per_branch = vicreg_loss(z_a, z_b).terms["variance"]
    pooled = variance_term(torch.cat([z_a, z_b]))
    assert torch.allclose(per_branch, (variance_term(z_a) + variance_term(z_b)) / 2, atol=TOL, rtol=0)
    assert not torch.allclose(per_branch, pooled, atol=1e-3)


def test_vicreg_covariance_is_unbiased() -> None:
    z, _ = _views(n=5, d=3)
    centred = z - z.mean(0)
    cov = centred.T @ centred / 4
    expected = (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / 3
    assert torch.allclose(covariance_term(z), expected, atol=TOL, rtol=0)


def test_vicreg_invariance_is_weighted_mean_over_positive_edges() -> None:
    z_a, z_b = _views(n=4, d=3)
    graph = torch.zeros(4, 4, dtype=torch.float64)
    graph[0, 1], graph[2, 3], graph[1, 0] = 1.0, 3.0, -5.0  # the negative edge must be ignored
    d01 = (z_a[0] - z_b[1]).pow(2).mean()
    d23 = (z_a[2] - z_b[3]).pow(2).mean()
    got = vicreg_loss(z_a, z_b, graph).terms["invariance"]
    assert torch.allclose(got, (d01 + 3 * d23) / 4, atol=TOL, rtol=0)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_augmentation_graph_equals_lightly_reference(temperature: float) -> None:
    z_a, z_b = _views()
    got = nt_xent_loss(z_a, z_b, temperature=temperature).total
    assert torch.allclose(got, reference_lightly_nt_xent(z_a, z_b, temperature), atol=TOL, rtol=0)


def test_nt_xent_label_graph_equals_solo_learn_mask_form() -> None:
    z_a, z_b = _views(n=12)
    labels = torch.arange(12) % 3
    same = (labels[:, None] == labels[None, :]).to(torch.float64)  # (12, 12)
    got = nt_xent_loss(z_a, z_b, same, graph_aa=same, graph_bb=same, temperature=0.2).total
    expected = reference_solo_learn_simclr(torch.cat([z_a, z_b]), torch.cat([labels, labels]), 0.2)
    assert torch.allclose(got, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_barlow_twins_augmentation_graph_equals_reference(seed: int) -> None:
    z_a, z_b = _views(seed=seed)
    got = barlow_twins_loss(z_a, z_b).total
    assert torch.allclose(got, reference_barlow_twins(z_a, z_b), atol=TOL, rtol=0)


def test_barlow_twins_graph_scale_does_not_matter() -> None:
    z_a, z_b = _views()
    graph = _signed_graph(16, 16, seed=4)
    once = barlow_twins_loss(z_a, z_b, graph).total
    assert torch.allclose(once, barlow_twins_loss(z_a, z_b, 7.0 * graph).total, atol=TOL, rtol=0)


# --- properties ------------------------------------------------------------------------------

sizes = st.tuples(st.integers(2, 9), st.integers(2, 9), st.integers(1, 6), st.integers(0, 2**31 - 1))


def _branches(n_a: int, n_b: int, d: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z_a = torch.randn(n_a, d, generator=gen, dtype=torch.float64)
    z_b = torch.randn(n_b, d, generator=gen, dtype=torch.float64)
    return z_a, z_b, _signed_graph(n_a, n_b, seed)


@settings(max_examples=40, deadline=None)
@given(sizes)
def test_vicreg_swapping_branches_keeps_loss(size: tuple[int, int, int, int]) -> None:
    z_a, z_b, graph = _branches(*size)
    assert torch.allclose(vicreg_loss(z_a, z_b, graph).total, vicreg_loss(z_b, z_a, graph.T).total, atol=TOL)


@settings(max_examples=40, deadline=None)
@given(sizes)
def test_barlow_twins_swapping_branches_keeps_loss(size: tuple[int, int, int, int]) -> None:
    z_a, z_b, graph = _branches(*size)
    ab = barlow_twins_loss(z_a, z_b, graph).total
    assert torch.allclose(ab, barlow_twins_loss(z_b, z_a, graph.T).total, atol=TOL)


@settings(max_examples=40, deadline=None)
@given(sizes, st.floats(0.05, 2.0), st.floats(1.0, 4.0))
def test_nt_xent_swapping_branches_keeps_loss(
    size: tuple[int, int, int, int], temperature: float, negative_weight: float
) -> None:
    z_a, z_b, graph = _branches(*size)
    graph_aa = _signed_graph(size[0], size[0], size[3] + 1)
    graph_bb = _signed_graph(size[1], size[1], size[3] + 2)
    kw = {"temperature": temperature, "negative_weight": negative_weight}
    ab = nt_xent_loss(z_a, z_b, graph, graph_aa=graph_aa, graph_bb=graph_bb, **kw).total
    ba = nt_xent_loss(z_b, z_a, graph.T, graph_aa=graph_bb, graph_bb=graph_aa, **kw).total
    assert torch.allclose(ab, ba, atol=TOL)


@settings(max_examples=40, deadline=None)
@given(sizes, st.integers(0, 2**31 - 1))
def test_barlow_twins_affine_map_of_one_branch_keeps_loss(size: tuple[int, int, int, int], seed: int) -> None:
    # eps = 0: the batch-norm eps is the only thing that breaks exact invariance (by O(eps / var)).
    z_a, z_b, graph = _branches(*size)
    gen = torch.Generator().manual_seed(seed)
    scale = torch.rand(z_a.shape[1], generator=gen, dtype=torch.float64) * 4 + 0.25
    shift = torch.randn(z_a.shape[1], generator=gen, dtype=torch.float64) * 10
    before = barlow_twins_loss(z_a, z_b, graph, eps=0.0).total
    after = barlow_twins_loss(z_a * scale + shift, z_b, graph, eps=0.0).total
    assert torch.allclose(before, after, atol=TOL, rtol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 5), st.integers(2, 6), st.integers(0, 2**31 - 1), st.floats(0.05, 2.0))
def test_nt_xent_identical_views_minimise_over_permutations(n: int, d: int, seed: int, temp: float) -> None:
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    identical = nt_xent_loss(z, z, temperature=temp).total
    for perm in itertools.permutations(range(n)):
        assert identical <= nt_xent_loss(z, z[list(perm)], temperature=temp).total + 1e-9


# --- contrastive details ---------------------------------------------------------------------


def test_nt_xent_known_negative_at_weight_one_is_an_ordinary_negative() -> None:
    z_a, z_b = _views(n=6)
    graph = torch.eye(6, dtype=torch.float64)
    graph[0, 3] = -1.0
    plain = nt_xent_loss(z_a, z_b).total
    assert torch.allclose(nt_xent_loss(z_a, z_b, graph, negative_weight=1.0).total, plain, atol=TOL)


def test_nt_xent_upweighted_known_negative_raises_loss() -> None:
    z_a, z_b = _views(n=6)
    graph = torch.eye(6, dtype=torch.float64)
    graph[0, 3] = -1.0
    plain = nt_xent_loss(z_a, z_b, graph, negative_weight=1.0).total
    assert nt_xent_loss(z_a, z_b, graph, negative_weight=4.0).total > plain + 1e-6


def test_nt_xent_anchor_without_positive_keeps_gradient_finite() -> None:
    z_a, z_b = _views(n=4)
    z_a.requires_grad_(True)
    graph = torch.zeros(4, 4, dtype=torch.float64)
    graph[0, 0] = 1.0
    nt_xent_loss(z_a, z_b, graph).total.backward()
    assert z_a.grad is not None and torch.isfinite(z_a.grad).all()


def test_nt_xent_without_positive_edge_is_zero() -> None:
    z_a, z_b = _views(n=4)
    assert nt_xent_loss(z_a, z_b, -torch.ones(4, 4, dtype=torch.float64)).total.item() == 0.0


# --- interface -------------------------------------------------------------------------------


def test_vicreg_mismatched_width_error_names_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 5\)"):
        vicreg_loss(torch.randn(4, 3), torch.randn(4, 5))


def test_augmentation_graph_with_unequal_branches_error_names_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 3\)"):
        barlow_twins_loss(torch.randn(4, 3), torch.randn(5, 3))


def test_graph_with_wrong_shape_error_names_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        nt_xent_loss(torch.randn(4, 3), torch.randn(5, 3), torch.ones(5, 4))


@pytest.mark.parametrize(("name", "cls"), [("vicreg", VICRegLoss), ("simclr", NTXentLoss), ("barlow", BarlowTwinsLoss)])
def test_build_loss_name_gives_module(name: str, cls: type) -> None:
    assert isinstance(build_loss(name), cls)


def test_build_loss_unknown_name_raises() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("triplet")


def test_loss_modules_match_functions() -> None:
    z_a, z_b = _views()
    assert torch.equal(VICRegLoss()(z_a, z_b).total, vicreg_loss(z_a, z_b).total)
    assert torch.equal(NTXentLoss(temperature=0.2)(z_a, z_b).total, nt_xent_loss(z_a, z_b, temperature=0.2).total)
    assert torch.equal(BarlowTwinsLoss()(z_a, z_b).total, barlow_twins_loss(z_a, z_b).total)


def test_loss_modules_pass_within_branch_graphs_only_to_losses_using_negatives() -> None:
    z_a, z_b = _views()
    n = z_a.shape[0]
    graph, graph_aa, graph_bb = torch.eye(n), -torch.eye(n).roll(1, dims=1), torch.eye(n).roll(2, dims=1)
    within = nt_xent_loss(z_a, z_b, graph, graph_aa=graph_aa, graph_bb=graph_bb).total
    assert not torch.equal(within, nt_xent_loss(z_a, z_b, graph).total)
    assert torch.equal(NTXentLoss()(z_a, z_b, graph, graph_aa, graph_bb).total, within)
    assert torch.equal(VICRegLoss()(z_a, z_b, graph, graph_aa, graph_bb).total, vicreg_loss(z_a, z_b, graph).total)
    assert torch.equal(
        BarlowTwinsLoss()(z_a, z_b, graph, graph_aa, graph_bb).total, barlow_twins_loss(z_a, z_b, graph).total
    )


def test_loss_terms_as_floats_names_total_loss() -> None:
    terms = vicreg_loss(*_views()).as_floats()
    assert set(terms) == {"loss", "invariance", "variance", "covariance"}
