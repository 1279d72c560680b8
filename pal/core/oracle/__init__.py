"""Oracle strategies behind one interface, chosen per project by name.

``get_oracle(name).select(ctx)`` returns the next :class:`TaskSpec`; see ``base`` for what the
server puts in the :class:`OracleContext` and ``cache`` for what it keeps per project."""

from __future__ import annotations

from collections.abc import Callable

from pal.core.oracle.active import ActiveOracle
from pal.core.oracle.base import NoTaskAvailable, Oracle, OracleContext, TaskSpec
from pal.core.oracle.cache import OracleCache
from pal.core.oracle.random_oracle import RandomOracle
from pal.core.oracle.uncertainty import UncertaintyOracle

ORACLES: dict[str, Callable[[], Oracle]] = {
    "random": RandomOracle,
    "active": ActiveOracle,
    "uncertainty": UncertaintyOracle,
}
DEFAULT_ORACLE = "active"


def get_oracle(name: str) -> Oracle:
    """The strategy registered under ``name``; an unknown name is an error (a typo in a project's
    settings must not silently become another strategy)."""
    try:
        factory = ORACLES[name]
    except KeyError:
        raise ValueError(f"unknown oracle {name!r}; known: {sorted(ORACLES)}") from None
    return factory()


__all__ = [
    "DEFAULT_ORACLE",
    "ORACLES",
    "NoTaskAvailable",
    "Oracle",
    "OracleCache",
    "OracleContext",
    "TaskSpec",
    "get_oracle",
]
