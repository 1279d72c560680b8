"""Graph-form self-supervised losses: VICReg (default), SimCLR's NT-Xent, BarlowTwins.

Every loss takes two branches ``z_a`` (n_a, D), ``z_b`` (n_b, D) and a signed graph between
them (see :mod:`trainer.losses.common`), and returns :class:`LossTerms`.
"""

from __future__ import annotations

from typing import Any

from trainer.losses.barlow import BarlowTwinsLoss, barlow_twins_loss
from trainer.losses.common import GraphLoss, LossTerms
from trainer.losses.simclr import NTXentLoss, nt_xent_loss
from trainer.losses.vicreg import VICRegLoss, vicreg_loss

__all__ = [
    "LOSSES",
    "BarlowTwinsLoss",
    "GraphLoss",
    "LossTerms",
    "NTXentLoss",
    "VICRegLoss",
    "barlow_twins_loss",
    "build_loss",
    "nt_xent_loss",
    "vicreg_loss",
]


LOSSES: dict[str, type[GraphLoss]] = {
    "vicreg": VICRegLoss,
    "simclr": NTXentLoss,
    "nt_xent": NTXentLoss,
    "barlow": BarlowTwinsLoss,
    "barlowtwins": BarlowTwinsLoss,
}


def build_loss(name: str, **kwargs: Any) -> GraphLoss:
    """A loss module by name; ``kwargs`` override its paper defaults."""
    try:
        cls = LOSSES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
    return cls(**kwargs)
