from __future__ import annotations

from pathlib import Path

import pytest

from research.rerun_cells import main

pytestmark = pytest.mark.research


def test_rerun_cells_refuses_an_unknown_cell_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"unknown cell\(s\) \['nope'\]; known: \[.*'active-e0.1'"):
        main(["--cells", "nope", "--data", str(tmp_path / "x.npz"), "--out", str(tmp_path / "out.json")])
