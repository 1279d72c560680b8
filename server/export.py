"""``pal export``: write a project's edges, embedding, cluster labels and manifest to a folder.

    pal export --project NAME_OR_ID --out DIR [--database-url URL] [--quiet]

Reads the database directly (like ``pal import``), so it works with the server stopped. The files
and their formats are those of ``GET /api/v1/projects/{pid}/exports/...`` (server/services/export.py);
``manifest.json`` is written last and lists each file's sha256."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings, get_settings
from server.db import make_engine
from server.services import export


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pal export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True, help="project id or name")
    parser.add_argument("--out", required=True, type=Path, help="folder to write (created if missing)")
    parser.add_argument("--database-url", default=None, help="default: PAL_DATABASE_URL")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings() if args.database_url is None else Settings(database_url=args.database_url)
    engine = make_engine(settings)
    sessions: sessionmaker[Session] = sessionmaker(bind=engine, expire_on_commit=False)
    console = Console(stderr=True)
    try:
        from server.admin import find_project

        with sessions() as db:
            project = find_project(db, str(args.project))
            project_id, name = project.id, project.name
        with Progress(TextColumn("[bold]{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, disable=args.quiet) as progress:
            bars: dict[str, TaskID] = {}

            def note(step: str, advance: int, total: int | None) -> None:
                if step not in bars:
                    bars[step] = progress.add_task(step, total=total)
                elif total is not None:
                    progress.update(bars[step], total=total)
                if advance:
                    progress.advance(bars[step], advance)

            manifest = export.write_export(sessions, project_id=project_id, out_dir=args.out, progress=note)
    finally:
        engine.dispose()
    counts = manifest["counts"]
    version = manifest["embedding"]["version"] if manifest["embedding"] else "none"
    print(f"exported project {project_id} {name!r} to {args.out}: {counts['items']} items, {counts['edges']} edges, "
          f"{counts.get('known_clusters', 0)} known clusters, embedding version {version}")
    for f in manifest["files"]:
        print(f"  {f['name']:<20} {f['rows']:>9} rows  sha256 {f['sha256'][:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
