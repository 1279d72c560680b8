"""CSV cells a spreadsheet will not run as formulas (OWASP's CSV injection advice), for every CSV
the server writes: a text cell that starts with ``= + - @``, a tab or a carriage return gets a
leading single quote. Numbers are written as they are (``-1`` stays a number)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeWriter:
    """``csv.writer`` whose every text cell goes through :func:`safe_cell`. A row with a line break
    in a cell is written fully quoted: ``csv`` quotes only the characters of its line terminator, so
    a bare carriage return would otherwise split the row for a reader."""

    def __init__(self, out: TextIO, **kwargs: Any) -> None:
        self._writer = csv.writer(out, **kwargs)
        self._quoted = csv.writer(out, **{**kwargs, "quoting": csv.QUOTE_ALL})

    def writerow(self, row: Iterable[Any]) -> None:
        cells = [safe_cell(v) for v in row]
        breaks = any(isinstance(c, str) and ("\r" in c or "\n" in c) for c in cells)
        (self._quoted if breaks else self._writer).writerow(cells)

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)
