"""``pal export``: write a project's labels to a folder, in PAL's own files or a standard dataset format.

    pal export --project NAME_OR_ID --out DIR [--format F] [--image-base URL] [--database-url URL] [--quiet]

Formats (docs/exports.md):
  csv           PAL's own files (default): edges.csv, embeddings.npy, embedding_index.csv, clusters.csv,
                manifest.json (written last, with each file's sha256)
  imagefolder   <cluster name>/<item>.<ext> image copies + metadata.csv (confidence); unlabelled items left out
  hf            a Hugging Face dataset (datasets.load_from_disk(DIR)) + parquet/data.parquet
  label-studio  tasks.json (Label Studio tasks with a choices prediction) + label_config.xml
  coco          coco.json, COCO-style classification (categories, images, annotations with score)

Reads the database directly (like ``pal import``), so it works with the server stopped. The files are
those of ``GET /api/v1/projects/{pid}/exports/...`` (server/services/export.py, export_formats/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session, sessionmaker

from pal.cli_parser import Parser
from server.config import Settings, get_settings
from server.db import make_engine
from server.services import export, export_formats
from server.services.export_items import snapshot


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pal export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True, help="project id or name")
    parser.add_argument("--out", required=True, type=Path, help="folder to write (created if missing)")
    # Checked in main, not with choices=: a wrong name gets one line, not argparse's usage block.
    parser.add_argument("--format", default="csv", help=f"one of {', '.join(export_formats.ALL_FORMATS)}")
    parser.add_argument("--image-base", default="http://127.0.0.1:8000",
                        help="label-studio: the PAL server whose image URLs the tasks hold")
    parser.add_argument("--database-url", default=None, help="default: PAL_DATABASE_URL")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.format not in export_formats.ALL_FORMATS:
        print(f"pal export: unknown format {args.format!r} (choose from {', '.join(export_formats.ALL_FORMATS)})",
              file=sys.stderr)
        return 2
    settings = get_settings() if args.database_url is None else Settings(database_url=args.database_url)
    engine = make_engine(settings)
    sessions: sessionmaker[Session] = sessionmaker(bind=engine, expire_on_commit=False)
    console = Console(stderr=True)
    try:
        from server.admin import find_project

        with sessions() as db:
            project = find_project(db, str(args.project))
            project_id, name = project.id, project.name
        if args.format != "csv":
            return _write_dataset(sessions, project_id, args)
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


def _write_dataset(sessions: sessionmaker[Session], project_id: int, args: argparse.Namespace) -> int:
    snap = snapshot(sessions, project_id)
    try:
        export_formats.write_format(sessions, snap, args.format, args.out, image_base=args.image_base)
    except export_formats.MissingExtra as exc:
        print(f"pal export: {exc}", file=sys.stderr)
        return 2
    unlabelled = len(snap.items) - snap.labelled
    print(f"exported project {project_id} {snap.project_name!r} as {args.format} to {args.out}: {len(snap.items)} "
          f"items, {snap.labelled} labelled ({unlabelled} unlabelled), {len(snap.names)} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
