"""The label-efficiency suite: every strategy, answer budget, error rate and seed, in one command.

    python -m research.label_efficiency_suite                   # full: $PAL_BENCH_DATA (Fashion-MNIST), ~2 h
    python -m research.label_efficiency_suite --preset quick    # shipped demo data, a few minutes

Each run is one :func:`research.label_efficiency.run` (fresh database, real server, simulated
annotators, the trainer) on a *schedule*: the answers are given in rounds ending at each budget of
the preset (e.g. 100, 300, 1000, 3000) with the same number of training steps per round for every
strategy, so the point at T of every curve comes after the same compute. One run per (strategy,
error rate, seed) therefore gives that strategy's whole curve.

Writes ``label_efficiency.json`` (every run's summary and curve, the aggregates), ``.md`` (tables,
headline, verdicts) and ``.png`` (accuracy vs answers, mean and spread over seeds) to
``--out-dir`` (full preset: ``research/``; quick: ``var/label_efficiency_quick/``). Finished runs are
kept in ``var/label_efficiency_runs/<preset>/`` and reused when the suite is started again with the
same settings and behaviour (the replay fingerprint, :func:`research.behaviour.behaviour`,
computed once per suite run), so an interrupted suite resumes (``--fresh`` re-runs everything;
``--keep-stored`` reuses runs measured with other behaviour).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from research.behaviour import behaviour
from research.label_efficiency import RunConfig, machine, run, stop_on_sigterm
from research.lineplot import PALETTE, Panel, Series, render

log = logging.getLogger("research.label_efficiency_suite")

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "fashion-mnist-demo.npz"
METRICS = ("label_accuracy", "knn_accuracy", "cluster_accuracy")


@dataclass(frozen=True)
class Cell:
    """One line of the results: a strategy with an error rate and a query design."""

    strategy: str
    error_rate: float = 0.0
    redundancy: int = 1
    gold_rate: float = 0.0
    known: int = 0  # known labels per class, given before any answer
    last: int | None = None  # stop at this many answers (the preset's schedule cut short); None: all of it
    seeds: int | None = None  # seeds 0..seeds-1 (a noisy figure wants more); None: the preset's
    team: str | None = None  # a ``pal simulate --team`` spec; None: identical annotators with uniform flips
    # > 0: this many annotators answering at once against two server processes on PostgreSQL with the
    # deployed defaults (a crowd); 0: four annotators taking turns against one reproducible process.
    crowd: int = 0

    def schedule(self, preset: Preset) -> tuple[int, ...]:
        return tuple(t for t in preset.schedule if self.last is None or t <= self.last)

    def seed_list(self, preset: Preset) -> tuple[int, ...]:
        return preset.seeds if self.seeds is None else tuple(range(self.seeds))

    def _name(self, base: str, design: str, known: str) -> str:
        """``base``, then ``design`` when redundancy or gold differ from plain grids, then ``known``
        when known labels are given: the one rule behind the key and the title."""
        plain = self.redundancy == 1 and not self.gold_rate
        return base + ("" if plain else design) + (known if self.known else "")

    @property
    def key(self) -> str:
        base = f"{self.strategy}-team" if self.team else f"{self.strategy}-e{self.error_rate:g}"
        crowd = f"-crowd{self.crowd}" if self.crowd else ""
        return self._name(base, f"-r{self.redundancy}-g{self.gold_rate:g}", f"-k{self.known}") + crowd

    @property
    def title(self) -> str:
        base = f"{self.strategy}, team {self.team}" if self.team else f"{self.strategy}, error {self.error_rate:g}"
        crowd = f", {self.crowd} at once on 2 processes" if self.crowd else ""
        return self._name(base, f", redundancy {self.redundancy}, gold {self.gold_rate:g}",
                          f", {self.known} known labels per class") + crowd


@dataclass(frozen=True)
class Preset:
    schedule: tuple[int, ...]
    seeds: tuple[int, ...]
    train_steps: int
    warmup_steps: int
    max_train_items: int
    max_test_items: int
    cells: tuple[Cell, ...]
    out_dir: Path


# Several server processes need a server database: the crowd cells run on this PostgreSQL.
CROWD_DATABASE = os.environ.get("PAL_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MAIN_ERRORS = (0.0, 0.1)
MAIN = ("random", "active", "supervised-images", "supervised-screens")
# On 2 shared cores the whole grid to 3,000 answers takes too long: error 0 runs go to 3,000 answers,
# the error 0.1 and noise runs stop at 1,000 (their points up to 1,000 are the same runs' points).
FULL = Preset(
    schedule=(100, 300, 1000, 3000), seeds=(0, 1, 2), train_steps=750, warmup_steps=150,
    max_train_items=10_000, max_test_items=2_000,
    cells=(
        Cell("ssl"),
        *(Cell(s, 0.0) for s in MAIN),
        *(Cell(s, 0.1, last=1000) for s in MAIN),
        # The noise design without noise: what redundancy and gold cost by themselves at equal answers.
        # Known labels: 3 per class (30 labels), the start the paper's loop assumes; without them noisy
        # discovery grids miss whole kinds. Six seeds: with 20 % wrong marks one run differs from the
        # next by a few points, and the loss is a difference of two means.
        Cell("active", 0.0, redundancy=3, gold_rate=0.1, known=3, last=1000, seeds=6),
        Cell("active", 0.2, last=1000),
        Cell("active", 0.2, redundancy=3, gold_rate=0.1, known=3, last=1000, seeds=6),
        # The headline noise team (pal.simulate.team.HEADLINE_TEAM): confusion-driven mistakes
        # averaging 10 % from four people plus one spammer, one answer per grid.
        Cell("active", 0.1, team="confusion=0.1:4,spammer:1", last=1000),
        # A crowd: 32 people answering at once, two server processes, the deployed defaults.
        Cell("active", 0.0, crowd=32, last=1000),
    ),
    out_dir=ROOT / "research",
)
QUICK = Preset(
    schedule=(100, 300), seeds=(0, 1), train_steps=300, warmup_steps=100, max_train_items=2_500,
    max_test_items=500,
    cells=(Cell("ssl"), Cell("random"), Cell("active"), Cell("supervised-images"), Cell("supervised-screens")),
    out_dir=ROOT / "var" / "label_efficiency_quick",
)
PRESETS = {"full": FULL, "quick": QUICK}


def run_config(preset: Preset, cell: Cell, seed: int, data: Path, database_url: str | None) -> RunConfig:
    schedule = cell.schedule(preset)
    # A cell cut short keeps the preset's steps per round, so that at every T every strategy has had
    # the same compute (not the preset's total spread over fewer rounds).
    per_round = (preset.train_steps - preset.warmup_steps) // len(preset.schedule)
    return RunConfig(
        data=data, tasks=schedule[-1], oracle=cell.strategy, seed=seed, error_rate=cell.error_rate,
        redundancy=cell.redundancy, gold_rate=cell.gold_rate, known_per_class=cell.known,
        annotators=cell.crowd or max(4, cell.redundancy), team=cell.team,
        in_turns=not cell.crowd, server_workers=2 if cell.crowd else 1, deployed=bool(cell.crowd),
        schedule=schedule, train_steps=preset.warmup_steps + per_round * len(schedule),
        warmup_steps=preset.warmup_steps,
        max_train_items=preset.max_train_items, max_test_items=preset.max_test_items,
        database_url=(database_url or CROWD_DATABASE) if cell.crowd else database_url,
    )


def _comparable(config: RunConfig) -> dict[str, Any]:
    d = asdict(config)
    for k in ("out", "workdir", "keep_workdir", "database_url"):
        d.pop(k, None)
    # Options at the value every run stored before them had are left out, so those runs stay comparable.
    for key, before in (("team", None), ("server_workers", 1), ("deployed", False)):
        if d.get(key) == before:
            d.pop(key, None)
    d["data"] = str(d["data"])
    d["schedule"] = list(d["schedule"]) if d["schedule"] is not None else None
    return d


def _groups(cells: list[Cell]) -> list[list[Cell]]:
    """Consecutive cells with the same (noise, priority) key: all seeds of a group run before the next."""
    groups: list[list[Cell]] = []
    key = None
    for c in cells:
        k = (c.error_rate > max(MAIN_ERRORS), c.strategy in ("active", "random"), c.error_rate)
        if k != key:
            groups.append([])
            key = k
        groups[-1].append(c)
    return groups


def job_list(preset: Preset) -> list[tuple[Cell, int]]:
    """Every (cell, seed) run, in the order they run: strategy comparisons first (every seed), then
    the baselines, then the noise figure, so that a suite stopped early has the most important
    numbers complete; within a group, seed by seed."""
    order = {"active": 0, "random": 0, "supervised-images": 1, "supervised-screens": 1, "ssl": 2}
    cells = sorted(preset.cells, key=lambda c: (c.error_rate > max(MAIN_ERRORS), order.get(c.strategy, 3),
                                                c.error_rate))
    return [(cell, seed) for group in _groups(cells)
            for seed in sorted({s for c in group for s in c.seed_list(preset)})
            for cell in group if seed in cell.seed_list(preset)]


def run_all(preset: Preset, data: Path, runs_dir: Path, *, fresh: bool, database_url: str | None,
            keep_stored: bool = False) -> list[dict[str, Any]]:
    """Every (cell, seed) run, reusing a stored result whose settings and behaviour are the same (with
    ``keep_stored``: whatever it was measured with)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    tag = behaviour()
    results = []
    jobs = job_list(preset)
    for n, (cell, seed) in enumerate(jobs, 1):
        config = run_config(preset, cell, seed, data, database_url)
        path = runs_dir / f"{cell.key}-s{seed}.json"
        if not fresh and path.exists():
            stored = json.loads(path.read_text())
            same = keep_stored or stored.get("behaviour") == tag
            if stored.get("suite_config") == _comparable(config) and same:
                log.info("[%d/%d] %s seed %d: stored result reused", n, len(jobs), cell.title, seed)
                results.append(stored)
                continue
        log.info("[%d/%d] %s seed %d (load average %.2f)", n, len(jobs), cell.title, seed, os.getloadavg()[0])
        result = run(config)
        result["cell"] = asdict(cell)
        result["seed"] = seed
        result["suite_config"] = _comparable(config)
        path.write_text(json.dumps(result, indent=1))
        log.info("[%d/%d] done in %.0f s: label accuracy %.3f at %d answers", n, len(jobs), result["wall_s"],
                 result["label_accuracy"], result["tasks"])
        results.append(result)
    return results


# --------------------------------------------------------------------------- aggregation


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max()), "n": len(arr)}


def aggregate(preset: Preset, results: list[dict[str, Any]]) -> dict[str, Any]:
    """``{cell key: {"cell", "points": {T: {metric: stats}}, "warmup": {...}}}``."""
    out: dict[str, Any] = {}
    for cell in preset.cells:
        runs = [r for r in results if r["cell"] == asdict(cell)]
        if not runs:
            continue
        points: dict[str, Any] = {}
        for i, t in enumerate(cell.schedule(preset)):
            rows = [r["curve"][i + 1] for r in runs]  # point 0 is the warm-up, point i + 1 ends round i
            points[str(t)] = {m: _stats([p[m] for p in rows]) for m in
                              (*METRICS, "edges_pos", "edges_neg", "tasks", "labels_given", "clusters")}
        out[cell.key] = {"cell": asdict(cell), "title": cell.title, "seeds": [r["seed"] for r in runs],
                         "points": points, "wall_s": _stats([r["wall_s"] for r in runs]),
                         "warmup": {m: _stats([r["curve"][0][m] for r in runs]) for m in METRICS}}
    return out


def _mean(agg: dict[str, Any], key: str, t: int, metric: str = "label_accuracy") -> float | None:
    cell = agg.get(key)
    if cell is None or str(t) not in cell["points"]:
        return None
    return float(cell["points"][str(t)][metric]["mean"])


def active_vs_random(preset: Preset, agg: dict[str, Any]) -> list[dict[str, Any]]:
    """Does ``active`` beat ``random`` on label accuracy by more than the seed spread?"""
    rows = []
    for e in MAIN_ERRORS:
        for t in preset.schedule:
            a, r = agg.get(f"active-e{e:g}"), agg.get(f"random-e{e:g}")
            if a is None or r is None or str(t) not in a["points"] or str(t) not in r["points"]:
                continue
            sa, sr = a["points"][str(t)]["label_accuracy"], r["points"][str(t)]["label_accuracy"]
            spread = max(sa["std"], sr["std"])
            gap = sa["mean"] - sr["mean"]
            rows.append({"error_rate": e, "answers": t, "active": sa["mean"], "active_std": sa["std"],
                         "random": sr["mean"], "random_std": sr["std"], "gap": gap, "spread": spread,
                         "separated": sa["min"] > sr["max"], "beats": gap > spread})
    return rows


def noise_cost(preset: Preset, agg: dict[str, Any]) -> list[dict[str, Any]]:
    """Label accuracy lost to wrong marks: each noisy cell against the cell with the same design
    (strategy, redundancy, gold, known labels) and no errors, at every T both reached."""
    rows = []
    for key, cell in agg.items():
        c = cell["cell"]
        if c["error_rate"] <= max(MAIN_ERRORS) or c["strategy"] == "ssl":
            continue
        for base_key, base in agg.items():
            b = base["cell"]
            if b["error_rate"] != 0 or any(b[f] != c[f] for f in ("strategy", "redundancy", "gold_rate", "known")):
                continue
            for t in preset.schedule:
                if str(t) not in cell["points"] or str(t) not in base["points"]:
                    continue
                sn, s0 = cell["points"][str(t)]["label_accuracy"], base["points"][str(t)]["label_accuracy"]
                rows.append({"design": base["title"].replace(", error 0", ""), "error_rate": c["error_rate"],
                             "answers": t, "error_free": s0["mean"], "noisy": sn["mean"],
                             "loss": s0["mean"] - sn["mean"], "spread": max(s0["std"], sn["std"]),
                             "noisy_key": key, "error_free_key": base_key})
    return rows


def answers_to_reach(preset: Preset, agg: dict[str, Any], key: str, target: float) -> float | None:
    """Answers at which the mean label-accuracy curve of ``key`` first reaches ``target``, by linear
    interpolation in log(answers) between schedule points (None: not reached in the schedule)."""
    xs = [t for t in preset.schedule if str(t) in agg[key]["points"]]
    ys = [float(agg[key]["points"][str(t)]["label_accuracy"]["mean"]) for t in xs]
    if ys[0] >= target:
        return float(xs[0])  # reached at the first point already: an upper bound
    for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:], strict=False):
        if y1 >= target:
            f = (target - y0) / (y1 - y0)
            return float(math.exp(math.log(x0) + f * (math.log(x1) - math.log(x0))))
    return None


def headline(preset: Preset, agg: dict[str, Any]) -> list[dict[str, Any]]:
    """For each budget T (error 0): PAL (``active``) after T answers, T labels (one per screen),
    T x (n + 1) labels (every image the T screens show), and the answers PAL needs to reach the
    label accuracy of the latter."""
    rows: list[dict[str, Any]] = []
    if "supervised-images-e0" not in agg or "active-e0" not in agg:
        return rows
    for t in preset.schedule:
        if str(t) not in agg["supervised-images-e0"]["points"]:
            continue
        images = agg["supervised-images-e0"]["points"][str(t)]
        target = float(images["label_accuracy"]["mean"])
        need = answers_to_reach(preset, agg, "active-e0", target)
        labels = float(images["labels_given"]["mean"])
        rows.append({"answers": t, "pal": _mean(agg, "active-e0", t),
                     "screens_labels": _mean(agg, "supervised-screens-e0", t),
                     "images_labels": labels, "images_label_accuracy": target,
                     "pal_answers_needed": need, "answer_ratio": labels / need if need else None})
    return rows


# --------------------------------------------------------------------------- outputs


COLORS = {"ssl": PALETTE["grey"], "random": PALETTE["orange"], "active": PALETTE["blue"],
          "supervised-images": PALETTE["green"], "supervised-screens": PALETTE["purple"]}


def plot(preset: Preset, agg: dict[str, Any], path: Path, title: str) -> None:
    panels = []
    for metric, name in (("label_accuracy", "label accuracy (exported clusters, train pool)"),
                         ("knn_accuracy", "kNN accuracy (k = 20, test set)")):
        panel = Panel(title=name, xlabel="human answers T (supervised: T x 9 or T labels)", ylabel="",
                      y_range=(0.0, 1.0) if metric == "label_accuracy" else None)
        for cell in agg.values():
            c = cell["cell"]
            if c["redundancy"] != 1 or c["gold_rate"] or c["error_rate"] not in MAIN_ERRORS:
                continue
            if metric == "label_accuracy" and c["strategy"] == "ssl":
                continue  # no answers, no clusters: nothing to export
            xs = [t for t in preset.schedule if str(t) in cell["points"]]
            pts = [cell["points"][str(t)][metric] for t in xs]
            panel.series.append(Series(
                label=f"{c['strategy']}" + (f", error {c['error_rate']:g}" if c["error_rate"] else ""),
                x=xs, y=[p["mean"] for p in pts], spread=[p["std"] for p in pts],
                color=COLORS.get(c["strategy"], PALETTE["brown"]), dashed=bool(c["error_rate"]),
            ))
        panels.append(panel)
    render(panels, path, title=title)


def _fmt(stats: dict[str, float] | None) -> str:
    return "—" if stats is None else f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def _at(cell: dict[str, Any], t: int, metric: str) -> dict[str, float] | None:
    point = cell["points"].get(str(t))
    return None if point is None else dict(point[metric])


def _load_range(doc: dict[str, Any]) -> str:
    loads = [r["machine"]["load_average"][0] for r in doc["runs"] if r.get("machine")]
    return f"{min(loads):.1f} to {max(loads):.1f}" if loads else "unknown"


def _graph_size(cell: dict[str, Any], t: int) -> str:
    p = cell["points"].get(str(t))
    if p is None:
        return "—"
    return f"{p['edges_pos']['mean']:.0f} / {p['edges_neg']['mean']:.0f}, {p['clusters']['mean']:.0f}"


def _noise_entry(cell: dict[str, Any], t: int) -> str:
    p = cell["points"].get(str(t))
    return "—" if p is None else f"{_fmt(p['label_accuracy'])} ({p['tasks']['mean']:.0f} tasks)"


def markdown(preset: Preset, agg: dict[str, Any], doc: dict[str, Any], png_name: str) -> str:
    m = doc["machine"]
    ts = preset.schedule
    lines = [
        "# Label efficiency",
        "",
        f"Data: `{doc['data']}`, a fixed subset of {preset.max_train_items} training and {preset.max_test_items} "
        f"test images (stratified, seed 0). Machine: {m['cpu']}, {m['cores']} cores shared with other work "
        f"(1-minute load average at the end of each run: {_load_range(doc)}). Seeds: {list(preset.seeds)}"
        f"{_more_seeds(preset)}; mean ± standard deviation over seeds. "
        f"Compute: {doc['runs_wall_s'] / 60:.0f} min of run time in all "
        f"({len(doc['runs'])} runs, run one after the other).",
        "",
        f"Every run: fresh database (SQLite), real server, {preset.warmup_steps} SSL warm-up steps, then rounds "
        f"ending at {', '.join(map(str, ts))} human answers, each followed by "
        f"{(preset.train_steps - preset.warmup_steps) // len(ts)} training steps (MLP on pixels, VICReg graph "
        "loss, batch 256): at every T all strategies have had the same compute. Grids of 8 candidates; "
        "simulated annotators over HTTP, taking turns in a fixed order, against a server whose oracle is seeded "
        "with the run's seed (a run is a function of its configuration and seed, so re-running the command "
        "reproduces it: label_efficiency_reproduction.md); labels are the project's exported cluster labels.",
        "",
        f"![label accuracy vs answers]({png_name})",
        "",
        "## Label accuracy (exported cluster labels on the training pool, Hungarian, at most C clusters)",
        "",
        "| strategy | " + " | ".join(f"T = {t}" for t in ts) + " |",
        "|---|" + "---|" * len(ts),
    ]
    for cell in agg.values():
        if cell["cell"]["strategy"] == "ssl":
            continue
        lines.append(f"| {cell['title']} | " + " | ".join(_fmt(_at(cell, t, "label_accuracy")) for t in ts) + " |")
    for metric, name in (("knn_accuracy", "kNN accuracy (k = 20, cosine, test set, train labels)"),
                         ("cluster_accuracy", "Cluster accuracy (k-means, k = classes, test set)")):
        lines += ["", f"## {name}", "", "| strategy | warm-up | " + " | ".join(f"T = {t}" for t in ts) + " |",
                  "|---|---|" + "---|" * len(ts)]
        for cell in agg.values():
            lines.append(f"| {cell['title']} | {_fmt(cell['warmup'][metric])} | "
                         + " | ".join(_fmt(_at(cell, t, metric)) for t in ts) + " |")
    lines += ["", "## Graph size", "", "| strategy | " + " | ".join(f"T = {t}: + / − edges, clusters" for t in ts)
              + " |", "|---|" + "---|" * len(ts)]
    for cell in agg.values():
        if cell["cell"]["strategy"] == "ssl":
            continue
        lines.append(f"| {cell['title']} | " + " | ".join(_graph_size(cell, t) for t in ts) + " |")
    rows = doc["active_vs_random"]
    if rows:
        lines += ["", "## Active vs random (label accuracy, equal answers)", "",
                  "| error | T | active | random | gap | spread (max std) | gap > spread |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['error_rate']:g} | {r['answers']} | {r['active']:.3f} | {r['random']:.3f} | "
                         f"{r['gap']:+.3f} | {r['spread']:.3f} | {'yes' if r['beats'] else 'NO'} |")
    if doc["headline"]:
        lines += ["", "## PAL vs labelling (error 0)", "",
                  "| T | PAL (active), T answers | T labels (one per screen) | labels of all the images T screens "
                  "show | their accuracy | PAL answers to reach it | labels per PAL answer |",
                  "|---|---|---|---|---|---|---|"]
        for h in doc["headline"]:
            need = f"more than {ts[-1]}" if h["pal_answers_needed"] is None else f"{h['pal_answers_needed']:.0f}"
            ratio = "—" if h["answer_ratio"] is None else f"{h['answer_ratio']:.1f}"
            screens = "—" if h["screens_labels"] is None else f"{h['screens_labels']:.3f}"
            lines.append(f"| {h['answers']} | {h['pal']:.3f} | {screens} | {h['images_labels']:.0f} | "
                         f"{h['images_label_accuracy']:.3f} | {need} | {ratio} |")
        lines += ["", "Labels of a labelled image count as known (correct unless the labeller erred); the pool has "
                  f"{preset.max_train_items} images, so T x 9 labels stop growing there. PAL answers to reach an "
                  "accuracy are interpolated in log(T) between measured budgets."]
    noisy = [k for k in agg if agg[k]["cell"]["error_rate"] > max(MAIN_ERRORS) or agg[k]["cell"]["redundancy"] != 1]
    if noisy and "active-e0" in agg:
        lines += ["", "## Noise", "", "| strategy | " + " | ".join(f"T = {t}" for t in ts) + " |",
                  "|---|" + "---|" * len(ts)]
        for key in ("active-e0", *noisy):
            cell = agg[key]
            lines.append(f"| {cell['title']} | " + " | ".join(_noise_entry(cell, t) for t in ts) + " |")
        lines += ["", "T counts answers; with redundancy 3 each task is answered three times, so T answers are "
                  "T / 3 tasks. Gold controls are recorded per annotator; the graph counts a pair only when at "
                  "least 3/4 of its vote weight agrees (a 2-1 split of three answers is left unknown). Known "
                  "labels: that many training items of each class, drawn with the run's seed, given through "
                  "`POST /projects/{id}/known-labels` before the first answer (the same items with and without "
                  "errors)."]
        cost = doc.get("noise_cost") or []
        if cost:
            lines += ["", "### What the wrong marks cost (label accuracy, same design without errors)", "",
                      "| design | error | T | error 0 | with errors | loss (points) | spread (max std) |",
                      "|---|---|---|---|---|---|---|"]
            for r in cost:
                lines.append(f"| {r['design']} | {r['error_rate']:g} | {r['answers']} | {r['error_free']:.3f} | "
                             f"{r['noisy']:.3f} | {100 * r['loss']:.1f} | {r['spread']:.3f} |")
    lines += ["", f"Measured with {MEASURED_WITH}: " + "; ".join(f"`{c}`" for c in measured_with(doc)), "",
              "Reproduce: `" + doc["command"] + "`", ""]
    return "\n".join(lines)


def _more_seeds(preset: Preset) -> str:
    more = [c for c in preset.cells if c.seeds is not None and c.seed_list(preset) != preset.seeds]
    if not more:
        return ""
    return " (" + "; ".join(f"{c.title}: {c.seeds}" for c in more) + ")"


MEASURED_WITH = ("(behaviour: the replay fingerprints of the core and the trainer, `python -m research.behaviour`; "
                 "runs measured before it: code, hashes of the oracle, graph, trainer and export modules)")


def measured_with(doc: dict[str, Any]) -> list[str]:
    """The distinct tags a suite document's runs were measured with: ``behaviour {...}`` (the replay
    fingerprint), or ``code {...}`` (the source hashes stored before it) for a run without one."""
    tags = set()
    for r in doc["runs"]:
        if r.get("behaviour") is not None:
            tags.add("behaviour " + json.dumps(r["behaviour"], sort_keys=True))
        else:
            tags.add("code " + json.dumps(r.get("code"), sort_keys=True))
    return sorted(tags)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.label_efficiency_suite",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--data", type=Path, default=None,
                        help="full: default $PAL_BENCH_DATA; quick: default the shipped demo data")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=None,
                        help="number of seeds (default: the preset's; a cell with its own count keeps it)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL server for the runs (default: SQLite)")
    parser.add_argument("--fresh", action="store_true", help="re-run every run, ignoring stored results")
    parser.add_argument("--keep-stored", action="store_true",
                        help="reuse stored runs even if measured with other behaviour (replay fingerprint)")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="where finished runs are kept (default: var/label_efficiency_runs/PRESET)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "alembic", "trainer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stop_on_sigterm()
    preset = PRESETS[args.preset]
    if args.seeds is not None:
        preset = replace(preset, seeds=tuple(range(args.seeds)))
    data = args.data
    if data is None:
        env = os.environ.get("PAL_BENCH_DATA")
        data = Path(env) if env else (DEMO if args.preset == "quick" else None)
    if data is None or not data.exists():
        missing = "set PAL_BENCH_DATA or pass --data" if data is None else f"{data} not found"
        print(f"label-efficiency suite skipped: no data ({missing})", file=sys.stderr)
        return 0
    out_dir = args.out_dir or preset.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    info = machine()
    runs_dir = args.runs_dir or ROOT / "var" / "label_efficiency_runs" / args.preset
    results = run_all(preset, data, runs_dir, fresh=args.fresh, database_url=args.database_url,
                      keep_stored=args.keep_stored)
    agg = aggregate(preset, results)
    command = ("python -m research.label_efficiency_suite --preset quick" if args.preset == "quick"
               else "PAL_BENCH_DATA=/path/to/fashion-mnist.npz python -m research.label_efficiency_suite")
    doc = {
        "preset": args.preset, "data": str(data), "machine": info, "behaviour": behaviour(), "command": command,
        "wall_s": round(time.perf_counter() - started, 1),
        "runs_wall_s": round(sum(float(r["wall_s"]) for r in results), 1),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(preset).items() if k != "cells"},
        "aggregate": agg, "active_vs_random": active_vs_random(preset, agg), "headline": headline(preset, agg),
        "noise_cost": noise_cost(preset, agg),
        "runs": [{k: v for k, v in r.items() if k not in ("config", "suite_config")} for r in results],
    }
    (out_dir / "label_efficiency.json").write_text(json.dumps(doc, indent=1))
    plot(preset, agg, out_dir / "label_efficiency.png",
         f"PAL label efficiency on {data.name} ({len(preset.seeds)} seeds, mean ± std)")
    (out_dir / "label_efficiency.md").write_text(markdown(preset, agg, doc, "label_efficiency.png"))
    print((out_dir / "label_efficiency.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
