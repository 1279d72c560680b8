"""Does a re-run of the label-efficiency suite reproduce the published table?

    python -m research.label_efficiency_compare research/label_efficiency.json var/rerun/label_efficiency.json \
        [--out research/label_efficiency_reproduction.md]

For every number of the table (the mean over seeds of label, kNN and cluster accuracy, per strategy
and T), the re-run's mean is compared with the published mean and its stated spread (the standard
deviation over seeds printed after the ±). A number is *reproduced* when the difference is at most
the stated spread; the report also counts the looser test "at most the larger of the two runs'
spreads", lists every number that fails, and says what each run was measured with (the suite stores
the replay fingerprint of what PAL asks and exports with every run; older runs, hashes of source files).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from research.label_efficiency_suite import MEASURED_WITH, measured_with

METRICS = ("label_accuracy", "knn_accuracy", "cluster_accuracy")


def rows(published: dict[str, Any], rerun: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (cell, T, metric) present in both runs."""
    out = []
    for key, cell in published["aggregate"].items():
        other = rerun["aggregate"].get(key)
        if other is None:
            continue
        for t, point in cell["points"].items():
            again = other["points"].get(t)
            if again is None:
                continue
            for metric in METRICS:
                a, b = point.get(metric), again.get(metric)
                if a is None or b is None or (metric == "label_accuracy" and cell["cell"]["strategy"] == "ssl"):
                    continue  # SSL alone exports no labels: nothing to reproduce
                diff = b["mean"] - a["mean"]
                out.append({
                    "cell": cell["title"], "answers": int(t), "metric": metric,
                    "published": a["mean"], "published_std": a["std"], "rerun": b["mean"], "rerun_std": b["std"],
                    "diff": diff, "within_stated": abs(diff) <= a["std"] + 5e-4,  # the table prints 3 decimals
                    "within_larger": abs(diff) <= max(a["std"], b["std"]) + 5e-4,
                })
    return out


# What a run's curve says about its outcome (not how long it took).
CURVE_KEYS = ("answers", "tasks", "labels_given", "edges_pos", "edges_neg", "train_step", *METRICS,
              "labelled_share", "clusters")


def _run_key(run: dict[str, Any]) -> str:
    return json.dumps([run.get("cell"), run.get("seed")], sort_keys=True)


def identical_runs(published: dict[str, Any], rerun: dict[str, Any]) -> tuple[int, int]:
    """(runs whose whole curve the re-run repeated exactly, runs present in both)."""
    others = {_run_key(r): r for r in rerun.get("runs", [])}
    same = both = 0
    for run in published.get("runs", []):
        other = others.get(_run_key(run))
        if other is None:
            continue
        both += 1
        curve = [[p.get(k) for k in CURVE_KEYS] for p in run.get("curve", [])]
        same += curve == [[p.get(k) for k in CURVE_KEYS] for p in other.get("curve", [])]
    return same, both


def _run_minutes(doc: dict[str, Any]) -> str:
    # The runs' own time: a suite that reused stored runs took seconds itself.
    return f"{float(doc.get('runs_wall_s', doc.get('wall_s', 0.0))) / 60:.0f}"


def markdown(published: dict[str, Any], rerun: dict[str, Any], table: list[dict[str, Any]], paths: list[str]) -> str:
    n = len(table)
    same, both = identical_runs(published, rerun)
    stated = sum(r["within_stated"] for r in table)
    larger = sum(r["within_larger"] for r in table)
    lines = [
        "# Label efficiency: reproduction",
        "",
        f"Table: `{paths[0]}` ({published['machine'].get('cpu', '?')}, {_run_minutes(published)} min of run "
        f"time). Other run of the same command: `{paths[1]}` "
        f"({rerun['machine'].get('cpu', '?')}, {_run_minutes(rerun)} min). "
        "Written by `python -m research.label_efficiency_compare`.",
        "",
        f"- Numbers compared (label, kNN and cluster accuracy means, every strategy and T): {n}.",
        f"- Other run's mean within the table's ± (standard deviation over seeds): **{stated} of {n}**.",
        f"- Within the larger of the two runs' standard deviations: {larger} of {n}.",
        f"- Largest difference: {max((abs(r['diff']) for r in table), default=0):.3f}.",
        f"- Runs (one per strategy, error rate and seed) whose whole quality curve came out identical "
        f"(answers, tasks, edges, training steps, every accuracy, clusters at every point): **{same} of {both}**.",
        "",
        f"Measured with {MEASURED_WITH}: table "
        + "; ".join(f"`{c}`" for c in measured_with(published))
        + "; other run "
        + "; ".join(f"`{c}`" for c in measured_with(rerun)),
        "",
    ]
    misses = [r for r in table if not r["within_stated"]]
    if misses:
        lines += [
            "Numbers outside the table's spread:",
            "",
            "| strategy | T | metric | table | other run | difference | within larger spread |",
            "|---|---:|---|---|---|---:|---|",
        ]
        for r in sorted(misses, key=lambda r: -abs(r["diff"])):
            lines.append(
                f"| {r['cell']} | {r['answers']} | {r['metric']} | {r['published']:.3f} ± {r['published_std']:.3f} "
                f"| {r['rerun']:.3f} ± {r['rerun_std']:.3f} | {r['diff']:+.3f} "
                f"| {'yes' if r['within_larger'] else 'no'} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m research.label_efficiency_compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("published", type=Path)
    parser.add_argument("rerun", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here too")
    args = parser.parse_args(argv)
    published, rerun = (json.loads(p.read_text()) for p in (args.published, args.rerun))
    table = rows(published, rerun)
    text = markdown(published, rerun, table, [str(args.published), str(args.rerun)])
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({"rows": table}, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
