"""Re-run chosen runs of the label-efficiency suite and say whether they repeat another run exactly.

    python -m research.rerun_cells --cells active-e0.1,random-e0.1 --seeds 0 \
        --data fashion-mnist.npz --out var/rerun/new.json [--against research/label_efficiency.json ...]

Each (cell, seed) is the suite's own run (:func:`research.label_efficiency_suite.run_config` of the
full preset); the output is a suite-like document (``runs`` with ``cell``, ``seed``, ``curve`` and
``behaviour``), so :func:`research.label_efficiency_compare.identical_runs` compares it with the
published table or with another re-run (for instance the same runs made by an older tree). Used to
check that a change meant to keep behaviour (a refactor) repeats whole curves, not just means.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from research.behaviour import behaviour
from research.label_efficiency import machine, run
from research.label_efficiency_compare import identical_runs
from research.label_efficiency_suite import FULL, run_config


def rerun(keys: list[str], seeds: list[int], data: Path) -> dict[str, Any]:
    cells = {c.key: c for c in FULL.cells}
    unknown = [k for k in keys if k not in cells]
    if unknown:
        raise SystemExit(f"rerun_cells: unknown cell(s) {unknown}; known: {sorted(cells)}")
    runs = []
    for key in keys:
        for seed in seeds:
            result = run(run_config(FULL, cells[key], seed, data, None))
            runs.append({"cell": asdict(cells[key]), "seed": seed, "curve": result["curve"],
                         "label_accuracy": result["label_accuracy"]})
    return {"machine": machine(), "behaviour": behaviour(), "runs": runs}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.rerun_cells", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", required=True, help="comma-separated cell keys of the full preset")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--data", type=Path, required=True, help="the Fashion-MNIST .npz of the table")
    parser.add_argument("--out", type=Path, required=True, help="where to write the document (JSON)")
    parser.add_argument("--against", type=Path, nargs="*", default=[], help="documents to compare with")
    args = parser.parse_args(argv)
    doc = rerun(args.cells.split(","), [int(s) for s in args.seeds.split(",")], args.data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    for other in args.against:
        same, both = identical_runs(json.loads(other.read_text()), doc)
        print(f"{other}: {same} of {both} runs repeated exactly")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
