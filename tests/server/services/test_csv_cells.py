"""CSV cells a spreadsheet would run as formulas are neutralised; numbers and plain text are not."""

from __future__ import annotations

import csv
import io

from server.services.csv_cells import SafeWriter, safe_cell


def test_formula_starts_get_a_quote_and_the_rest_is_unchanged() -> None:
    for cell in ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1:A2)", "\tx", "\rx"]:
        assert safe_cell(cell) == "'" + cell
    for cell in ["cats/1.png", "", "a=b", -1, 2.5, None]:
        assert safe_cell(cell) == cell


def test_rows_read_back_as_written_even_with_a_carriage_return() -> None:
    buf = io.StringIO()
    SafeWriter(buf, lineterminator="\n").writerows([("id", "source", "cluster"), (1, "\rCR", -1), (2, "a", 3)])
    rows = list(csv.reader(io.StringIO(buf.getvalue(), newline="")))
    assert rows == [["id", "source", "cluster"], ["1", "'\rCR", "-1"], ["2", "a", "3"]]
