"""The ``pal`` command line: one entry point for serving, training, importing and operating PAL."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from pal import cli_accounts
from pal.cli_parser import MissingDatabase, Parser, port, positive_int, require_database

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return register


COMMANDS.update(cli_accounts.HANDLERS)


def _db_session():  # type: ignore[no-untyped-def]
    from server.config import get_settings
    from server.db import get_sessionmaker

    require_database(get_settings().database_url)

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
    # uvicorn's proxy headers stay off: it would trust X-Forwarded-For from 127.0.0.1 by default. The
    # app trusts forwarded headers only from PAL_TRUSTED_PROXIES (server/main.py).
    uvicorn.run("server.main:app", host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level, proxy_headers=False)
    return 0


# ``pal project`` option -> the project setting it sets (errors name the option the user typed).
PROJECT_OPTIONS = {"n_candidates": "--n", "redundancy": "--redundancy", "oracle": "--oracle",
                   "budget_cap": "--budget", "gold_rate": "--gold-rate", "description": "--description"}


@command("project")
def cmd_project(args: argparse.Namespace) -> int:
    """Create the project, or, when the name exists, change the settings given on the command line
    (and only those), saying which changed."""
    import sqlalchemy as sa

    from server import models
    from server.admin import ensure_project
    from server.schemas import ProjectCreate, ProjectUpdate
    from server.services.projects import update_project

    given = {key: getattr(args, key) for key in PROJECT_OPTIONS if getattr(args, key) is not None}
    with _db_session() as db:
        project = db.execute(sa.select(models.Project).where(models.Project.name == args.name)).scalar_one_or_none()
        if project is None:
            project = ensure_project(db, ProjectCreate(name=args.name, **given))
            print(f"project {project.id} {project.name!r} created")
            return 0
        changed = update_project(db, project, ProjectUpdate(**given).model_dump(exclude_unset=True))
    if not given:
        print(f"project {project.id} {project.name!r} exists; no setting given, nothing changed")
    elif not changed:
        print(f"project {project.id} {project.name!r} exists and already has these settings; nothing changed")
    else:
        told = ", ".join(f"{PROJECT_OPTIONS[k]} {old} -> {new}" for k, (old, new) in changed.items())
        print(f"project {project.id} {project.name!r} exists; updated {told}")
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
    if not result.imported and not result.skipped:
        print(f"pal import: warning: {args.path} holds no images (supported: PNG, JPEG, WebP, ...); "
              "nothing was imported", file=sys.stderr)
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
    parser = Parser(prog="pal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="apply the Alembic migrations (PAL_DATABASE_URL)")
    p.add_argument("--revision", default=None,
                   help="the revision to reach, e.g. 0006 (default: head, or base with --downgrade)")
    p.add_argument("--downgrade", action="store_true",
                   help="go back to --revision instead (drops what later migrations added: back up first)")

    p = sub.add_parser("serve", help="run the API and web pages with uvicorn")
    p.add_argument("--host", default=os.environ.get("PAL_HOST", "127.0.0.1"),
                   help="address to listen on (default PAL_HOST or 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=port, default=int(os.environ.get("PAL_PORT", "8000")),
                   help="TCP port (default PAL_PORT or 8000)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="server processes (default 1; several need PostgreSQL, docs/operations.md)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug", "trace"],
                   help="uvicorn's log level (default info)")
    p.add_argument("--migrate", action="store_true", help="apply migrations first")

    cli_accounts.add_parsers(sub)

    p = sub.add_parser("project", help="create a project, or change the given settings of an existing one")
    p.add_argument("--name", required=True, help="the project's name (an existing name: its settings change)")
    p.add_argument("--n", dest="n_candidates", type=int, default=None, help="candidates per grid, 1-24 (default 8)")
    p.add_argument("--redundancy", type=int, default=None, help="answers per grid, 1-10 (default 1)")
    p.add_argument("--oracle", default=None, choices=["random", "active", "uncertainty"],
                   help="how grids are chosen (default active)")
    p.add_argument("--budget", dest="budget_cap", type=int, default=None,
                   help="most grids that may be issued (default 1000)")
    p.add_argument("--gold-rate", type=float, default=None, help="share of grids with control pairs, 0-1 (default 0)")
    p.add_argument("--description", default=None, help="shown to annotators")

    p = sub.add_parser("import", help="import a folder, CSV/JSONL manifest or .npz into a project")
    p.add_argument("--project", required=True, help="project id or name")
    p.add_argument("path", help="an image folder (class subfolders: hidden labels), a .csv/.jsonl manifest or an .npz")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

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
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=8000, help="TCP port (default 8000)")
    p.add_argument("--no-trainer", action="store_true", help="run the server only")
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
        args = argparse.Namespace(command=argv[0], rest=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except Exception as exc:  # a refused input is one line and exit 2, never a traceback
        message = refusal(exc)
        if message is None:
            raise
        print(f"pal {args.command}: {message}", file=sys.stderr)
        return 2


def refusal(exc: Exception) -> str | None:
    """The one-line reason for an error the user can act on, or None for a bug (shown in full)."""
    from pydantic import ValidationError
    from sqlalchemy.exc import OperationalError

    from server.errors import ApiError
    from server.services.imports import ImportFormatError

    if isinstance(exc, ApiError):
        return exc.message
    if isinstance(exc, MissingDatabase):
        return str(exc)
    if isinstance(exc, ImportFormatError):  # a file that is not what it claims to be
        return str(exc)
    if isinstance(exc, OSError):  # a file named on the command line: missing, unreadable, a folder...
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    if type(exc).__module__.startswith("alembic"):  # e.g. an unknown --revision
        return str(exc)
    if isinstance(exc, ValidationError):
        return "; ".join(f"{_option(e['loc'])}: {e['msg']}" for e in exc.errors())
    if isinstance(exc, OperationalError):
        from server.config import get_settings

        where = get_settings().database_url.split("@")[-1]
        return f"the database {where} is unreachable or not migrated (run pal migrate): {exc.orig}"
    return None


def _option(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "?"
    return PROJECT_OPTIONS.get(name, name)


if __name__ == "__main__":
    sys.exit(main())
