"""The ``pal`` command line: one entry point for serving, training, importing and operating PAL."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return register


def _db_session():  # type: ignore[no-untyped-def]
    from server.db import get_sessionmaker

    return get_sessionmaker()()


@command("migrate")
def cmd_migrate(args: argparse.Namespace) -> int:
    from server.config import get_settings
    from server.migrate import downgrade, upgrade

    url = get_settings().database_url
    if args.downgrade:
        downgrade(url, args.revision or "base")
    else:
        upgrade(url, args.revision or "head")
    print(f"database at {args.revision or ('base' if args.downgrade else 'head')}: {url.split('@')[-1]}")
    return 0


@command("serve")
def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.migrate:
        cmd_migrate(argparse.Namespace(downgrade=False, revision=None))
    uvicorn.run("server.main:app", host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level, proxy_headers=True)
    return 0


@command("user")
def cmd_user(args: argparse.Namespace) -> int:
    from server.admin import ensure_user

    with _db_session() as db:
        user = ensure_user(db, email=args.email, role=args.role, password=args.password, name=args.name)
        print(f"user {user.id} {user.email} ({user.role})")
    return 0


@command("token")
def cmd_token(args: argparse.Namespace) -> int:
    from server.admin import new_token_for

    with _db_session() as db:
        print(new_token_for(db, email=args.email, name=args.name))
    return 0


@command("project")
def cmd_project(args: argparse.Namespace) -> int:
    from server.admin import ensure_project
    from server.schemas import ProjectCreate

    with _db_session() as db:
        project = ensure_project(db, ProjectCreate(
            name=args.name, n_candidates=args.n, redundancy=args.redundancy, oracle=args.oracle,
            budget_cap=args.budget, gold_rate=args.gold_rate,
        ))
        print(f"project {project.id} {project.name!r}")
    return 0


@command("import")
def cmd_import(args: argparse.Namespace) -> int:
    from server.admin import find_project, import_path

    with _db_session() as db:
        project = find_project(db, args.project)
        result = import_path(db, project_id=project.id, path=Path(args.path), show_progress=not args.quiet)
    for skip in result.skipped:
        print(f"skipped {skip['source']}: {skip['reason']}")
    print(f"imported {result.imported} items, skipped {len(result.skipped)}")
    return 0


@command("known-labels")
def cmd_known_labels(args: argparse.Namespace) -> int:
    from server.admin import find_project
    from server.errors import ApiError
    from server.services.known_labels import add_known_labels
    from server.services.known_labels_csv import parse_known_labels

    text = Path(args.csv).read_text(encoding="utf-8")
    with _db_session() as db:
        project = find_project(db, args.project)
        try:
            report = add_known_labels(db, project.id, parse_known_labels(db, project.id, text), None)
        except ApiError as exc:
            print(f"pal known-labels: {exc.message}", file=sys.stderr)
            return 2
    print(f"known labels: {report.added} added, {report.unchanged} unchanged, {report.edges} edges, "
          f"{report.total} in the project")
    return 0


@command("embeddings")
def cmd_embeddings(args: argparse.Namespace) -> int:
    from server.admin import find_project
    from server.errors import ApiError
    from server.services.embedding_import import import_embedding

    try:
        raw = Path(args.vectors).read_bytes()
        index = None if args.index is None else Path(args.index).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"pal embeddings import: {exc}", file=sys.stderr)
        return 2
    with _db_session() as db:
        project = find_project(db, args.project)
        try:
            version = import_embedding(db, project=project, vectors_raw=raw, index_text=index)
        except ApiError as exc:
            print(f"pal embeddings import: {exc.message}", file=sys.stderr)
            return 2
    print(f"embedding version {version.version} of project {project.id}: {version.n_items} items x {version.dim}, "
          "current now")
    return 0


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    from pal.demo import run_demo

    return run_demo(args)


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from trainer.loop import main as train_main

    return int(train_main(args.rest) or 0)


def _forward(name: str, module: str, func: str = "main") -> None:
    def handler(args: argparse.Namespace) -> int:
        import importlib

        fn = getattr(importlib.import_module(module), func)
        return int(fn(args.rest) or 0)

    COMMANDS[name] = handler


_forward("simulate", "pal.simulate")
_forward("export", "server.export")
_forward("bench", "bench.cli")
_forward("audit", "server.audit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="apply the Alembic migrations (PAL_DATABASE_URL)")
    p.add_argument("--revision", default=None)
    p.add_argument("--downgrade", action="store_true")

    p = sub.add_parser("serve", help="run the API and web pages with uvicorn")
    p.add_argument("--host", default=os.environ.get("PAL_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PAL_PORT", "8000")))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", default="info")
    p.add_argument("--migrate", action="store_true", help="apply migrations first")

    p = sub.add_parser("user", help="create or update a user")
    p.add_argument("--email", required=True)
    p.add_argument("--role", choices=["admin", "annotator", "trainer"], required=True)
    p.add_argument("--password", default=None)
    p.add_argument("--name", default="")

    p = sub.add_parser("token", help="issue an API token for a user (printed once)")
    p.add_argument("--email", required=True)
    p.add_argument("--name", default="cli")

    p = sub.add_parser("project", help="create a project (no-op if the name exists)")
    p.add_argument("--name", required=True)
    p.add_argument("--n", type=int, default=8, help="candidates per grid")
    p.add_argument("--redundancy", type=int, default=1)
    p.add_argument("--oracle", default="active", choices=["random", "active", "uncertainty"])
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--gold-rate", type=float, default=0.0)

    p = sub.add_parser("import", help="import a folder, CSV/JSONL manifest or .npz into a project")
    p.add_argument("--project", required=True, help="project id or name")
    p.add_argument("path")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("known-labels", help="give known labels (CSV: item_id or source, label) to a project")
    p.add_argument("--project", required=True, help="project id or name")
    p.add_argument("csv", help="CSV file with a label column and an item_id or source column")

    p = sub.add_parser("embeddings", help="embeddings you bring: pal embeddings import --project P FILE.npy")
    p.add_argument("action", choices=["import"], help="import: publish the vectors as the current embedding")
    p.add_argument("vectors", help=".npy float (N, D), one row per item")
    p.add_argument("--project", required=True, help="project id or name")
    p.add_argument("--index", help="CSV with an item_id or a source column, one line per row "
                                   "(default: rows follow the project's items in id order)")

    p = sub.add_parser("demo", help="one command: database, demo data, server and trainer")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-trainer", action="store_true")
    p.add_argument("--setup-only", action="store_true", help="prepare the database and exit")

    for name, helptext in (
        ("train", "run the trainer worker (pal train --help)"),
        ("simulate", "simulated annotators over the HTTP API (pal simulate --help)"),
        ("export", "export edges, embeddings and cluster labels (pal export --help)"),
        ("bench", "benchmarks (pal bench --help)"),
        ("audit", "check the database invariants after a run (pal audit --help)"),
    ):
        p = sub.add_parser(name, help=helptext, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


FORWARDED = ("train", "simulate", "export", "bench", "audit")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in FORWARDED:
        # argparse.REMAINDER does not capture a leading "--flag": hand the arguments over untouched.
        return COMMANDS[argv[0]](argparse.Namespace(command=argv[0], rest=argv[1:]))
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
