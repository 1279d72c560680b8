"""The ``pal simulate`` command line: its arguments and the run they start (see :mod:`pal.simulate`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import httpx

import pal.simulate
from pal.cli_parser import Parser
from pal.simulate.annotator import SimConfig
from pal.simulate.api import SimulationError, create_annotators
from pal.simulate.driver import simulate
from pal.simulate.models import AnnotatorModel
from pal.simulate.team import HEADLINE_TEAM, build_team, parse_team, team_size
from pal.simulate.truth import GroundTruth

log = logging.getLogger("pal.simulate")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="pal simulate", description=str(pal.simulate.__doc__).split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default="http://127.0.0.1:8000", help="server base URL")
    p.add_argument("--project", type=int, required=True, help="project id")
    p.add_argument("--labels", type=Path, required=True,
                   help=".npz the project was imported from (images, labels): the hidden ground truth")
    p.add_argument("--admin-token", default=os.environ.get("PAL_ADMIN_TOKEN", ""),
                   help="admin bearer token, to create the annotator accounts (default: $PAL_ADMIN_TOKEN)")
    p.add_argument("--annotators", type=int, default=None, help="number of annotators (default 4, or the team's size)")
    p.add_argument("--tasks", type=int, default=100, help="answers to give in all")
    p.add_argument("--error-rate", type=float, default=0.0,
                   help="probability of flipping each candidate's mark (uniform annotators: the default; "
                        "lazy ones when they look)")
    p.add_argument("--team", default=None, metavar="SPEC",
                   help="how each annotator errs: comma-separated MODEL[=PARAM][:COUNT], annotators in that order; "
                        "models: uniform[=RATE] (flips at RATE, default --error-rate), confusion[=MEAN|=FILE] "
                        "(wrong marks by pair of kinds: a matrix derived from the class mean images of --labels "
                        "with mean wrong-mark rate MEAN, default 0.1, or a C x C .npy/.csv of probabilities), "
                        "spammer[=RATE] (marks each candidate at random with probability RATE, default 0.5), "
                        "lazy[=SHARE] (answers 'all same' on a share SHARE of grids, default 0.8). "
                        f"Sets the number of annotators. Headline noise team: {HEADLINE_TEAM!r}. "
                        "Default: every annotator uniform")
    p.add_argument("--cant-tell-rate", type=float, default=0.0, help="probability of skipping a grid")
    p.add_argument("--think-ms", type=float, default=1000.0, help="median think time per grid (ms)")
    p.add_argument("--retry-rate", type=float, default=0.05, help="share of answers POSTed twice (same key)")
    p.add_argument("--undo-rate", type=float, default=0.0, help="share of answers undone and answered again")
    p.add_argument("--no-images", dest="fetch_images", action="store_false", help="do not load the thumbnails")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--in-turns", action="store_true",
                   help="annotators answer one grid at a time in a fixed order (with a server started with "
                        "PAL_ORACLE_SEED, the same seed gives the same run)")
    p.add_argument("--report", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--log-level", default="INFO")
    return p


def _setup(args: argparse.Namespace) -> tuple[SimConfig, list[AnnotatorModel] | None]:
    """The run's configuration and team from the arguments, checked before any request is sent;
    ValueError (one line) for a bad value."""
    if not args.labels.is_file():
        raise ValueError(f"{args.labels} is not a file")
    entries = parse_team(args.team) if args.team is not None else None
    annotators = args.annotators if args.annotators is not None else 4
    if entries is not None:
        if args.annotators is not None and args.annotators != team_size(entries):
            raise ValueError(f"--annotators {args.annotators} but the team has {team_size(entries)}")
        annotators = team_size(entries)
    config = SimConfig(annotators=annotators, tasks=args.tasks, error_rate=args.error_rate,
                       cant_tell_rate=args.cant_tell_rate, think_ms=args.think_ms, retry_rate=args.retry_rate,
                       undo_rate=args.undo_rate, fetch_images=args.fetch_images, seed=args.seed,
                       in_turns=args.in_turns)
    models = None if entries is None else build_team(entries, error_rate=args.error_rate, labels_file=args.labels)
    return config, models


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the report
    try:
        config, models = _setup(args)
    except ValueError as exc:
        print(f"pal simulate: {exc}", file=sys.stderr)
        return 2
    if not args.admin_token:
        print("pal simulate: an admin token is needed (--admin-token or $PAL_ADMIN_TOKEN)", file=sys.stderr)
        return 2
    try:
        with httpx.Client(base_url=args.server.rstrip("/"), timeout=120,
                          headers={"Authorization": f"Bearer {args.admin_token}"}) as admin:
            truth = GroundTruth.from_npz(admin, args.project, args.labels)
            log.info("ground truth for %d items (%d project items not in %s)", len(truth.labels), truth.unmatched,
                     args.labels)
            accounts = create_annotators(admin, args.project, config.annotators)
    except (httpx.HTTPError, SimulationError, OSError, KeyError, ValueError) as exc:
        print(f"pal simulate: cannot set up the run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    report = simulate(args.server, args.project, truth, config, accounts, models)
    summary = report.to_dict()
    print(json.dumps({k: v for k, v in summary.items() if k != "errors"} | {"errors": len(report.errors)}, indent=2))
    if args.report:
        args.report.write_text(json.dumps(summary, indent=2))
    for err in report.errors[:10]:
        print(f"error: {err}", file=sys.stderr)
    return 1 if report.errors else 0
