"""Run a block of numpy/scipy work on fewer BLAS threads (OpenBLAS wheels; best effort).

The oracle's matmuls are small (at most a 131k x 128 block against a few vectors), and split
over threads they spend their time synchronising: on a busy 2-core machine a selection at 100k
items took ~110 ms with the default threads and ~30 ms with one. OpenBLAS's thread count is
process-wide, so nested and concurrent users are counted: the first to enter lowers it, the
last to leave restores it. Without an OpenBLAS found (another BLAS), this does nothing.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads")

_lock = threading.Lock()
_users = 0
_saved: list[tuple[Callable[[int], object], int]] = []
_libs: list[tuple[Callable[[int], object], Callable[[], int]]] | None = None


def _openblas_libs() -> list[tuple[Callable[[int], object], Callable[[], int]]]:
    """(setter, getter) of every OpenBLAS bundled with numpy and scipy."""
    import scipy

    found = []
    for package in (np, scipy):
        site = os.path.dirname(os.path.dirname(str(package.__file__)))
        for path in glob.glob(os.path.join(site, package.__name__ + ".libs", "*openblas*")):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            setter = next((getattr(lib, n) for n in _SETTERS if hasattr(lib, n)), None)
            getter = next((getattr(lib, n) for n in _GETTERS if hasattr(lib, n)), None)
            if setter is not None and getter is not None:
                found.append((setter, getter))
    return found


@contextmanager
def limit_blas_threads(n: int | None = 1) -> Iterator[None]:
    """At most ``n`` BLAS threads inside the block (``None``: no change)."""
    global _users, _libs, _saved
    if n is None:
        yield
        return
    with _lock:
        if _libs is None:
            _libs = _openblas_libs()
        if _users == 0:
            _saved = [(setter, int(getter())) for setter, getter in _libs]
            for setter, _ in _saved:
                setter(n)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                for setter, before in _saved:
                    setter(before)
