"""Hugging Face dataset export: a ``datasets.Dataset`` saved with ``save_to_disk`` (``load_from_disk(DIR)``)
and the same rows as Parquet (``parquet/data.parquet``, readable with no ``datasets`` at all).

Columns: ``image`` (``datasets.Image``: the original bytes), ``label`` (``ClassLabel`` with the cluster
names; ``-1``, Hugging Face's "no label", for items with no cluster yet), ``confidence`` (float32),
``item_id`` (int64), ``source`` (string), ``known`` (bool: in a known cluster of the graph).

The Parquet file is written first, ``ROW_GROUP`` rows at a time, straight from the database pages; the
dataset is then built from it by ``datasets`` (Arrow, on disk), so neither step holds every image.
Needs the ``export`` extra (``pip install 'pal-labelling[export]'``: datasets, pyarrow)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from server.services.export_formats.archive import Files, folder_files
from server.services.export_items import ExportSnapshot, iter_images

ROW_GROUP = 512
PARQUET = "parquet/data.parquet"


class MissingExtra(RuntimeError):
    """A format's libraries are not installed."""


def _libraries() -> tuple[Any, Any, Any]:
    try:
        import datasets
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # the export extra is optional: say what to install, not a traceback
        raise MissingExtra("the hf format needs datasets and pyarrow: pip install 'pal-labelling[export]'") from exc
    return datasets, pa, pq


def features(names: list[str]) -> Any:
    datasets, _pa, _pq = _libraries()
    return datasets.Features({
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=names),  # -1: no label (a project with no cluster has no names)
        "confidence": datasets.Value("float32"),
        "item_id": datasets.Value("int64"),
        "source": datasets.Value("string"),
        "known": datasets.Value("bool"),
    })


def write_parquet(sessions: sessionmaker[Session], snap: ExportSnapshot, path: Path) -> int:
    """Every item as one Parquet row (with the dataset's features as schema metadata); returns the rows."""
    _datasets, pa, pq = _libraries()
    feats = features(snap.names)
    schema = feats.arrow_schema
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    batch: dict[str, list[Any]] = {name: [] for name in schema.names}

    def flush(writer: Any) -> None:
        writer.write_table(pa.Table.from_pydict(batch, schema=schema))
        for column in batch.values():
            column.clear()

    with pq.ParquetWriter(str(path), schema) as writer:
        for item, data in iter_images(sessions, snap.items):
            batch["image"].append({"bytes": data, "path": item.file_name})
            batch["label"].append(item.label)
            batch["confidence"].append(item.confidence)
            batch["item_id"].append(item.item_id)
            batch["source"].append(item.source)
            batch["known"].append(item.known)
            rows += 1
            if len(batch["item_id"]) >= ROW_GROUP:
                flush(writer)
        if batch["item_id"] or rows == 0:
            flush(writer)
    return rows


def write_dir(sessions: sessionmaker[Session], snap: ExportSnapshot, out_dir: Path, image_base: str = "") -> int:
    """``out_dir`` becomes a saved dataset with its Parquet copy under ``parquet/``; returns the rows."""
    datasets, _pa, _pq = _libraries()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pal-hf-") as tmp:
        parquet = Path(tmp) / "data.parquet"
        rows = write_parquet(sessions, snap, parquet)
        # The cache goes to the temporary folder: nothing of the export is left in ~/.cache.
        dataset = datasets.Dataset.from_parquet(str(parquet), features=features(snap.names),
                                                cache_dir=str(Path(tmp) / "cache"))
        dataset.save_to_disk(str(out_dir))
        del dataset
        (out_dir / PARQUET).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(parquet), out_dir / PARQUET)
    return rows


def files(sessions: sessionmaker[Session], snap: ExportSnapshot, image_base: str = "") -> Files:
    """For the archive: the dataset is built in a temporary folder (datasets writes files), then sent."""
    with tempfile.TemporaryDirectory(prefix="pal-hf-out-") as tmp:
        write_dir(sessions, snap, Path(tmp))
        yield from folder_files(Path(tmp))
