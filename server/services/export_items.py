"""What every labelled-dataset export writes (ImageFolder, Hugging Face, Label Studio, COCO): each item's
exported cluster, that cluster's name and the label's confidence, and the item's image bytes.

The labels are those of ``clusters.csv`` (``server/services/export.py``: known graph clusters, then the
embedding's vote), named here: a cluster that holds items with known labels (``pal known-labels``) takes
the label most of them carry; any other cluster is ``cluster-<n>``. Items with no cluster (``-1``: no
embedding to vote with yet) are *unlabelled*: the ImageFolder export skips them (every folder there is a
class), the others keep them with no label so nothing is lost silently.

A snapshot holds one small row per item (ids, label, confidence, size); image bytes are read in pages
of ``IMAGE_PAGE`` items, each page its own short transaction, and handed on one at a time, so an export
holds a page of images at most, whatever the project's size."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server import models
from server.services.export import cluster_table

IMAGE_PAGE = 256
UNLABELLED = -1
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
_UNSAFE = re.compile(r"[\x00-\x1f/\\:*?\"<>|]+")
_FALLBACK = re.compile(r"cluster-(\d+)")


@dataclass(frozen=True)
class ExportItem:
    item_id: int
    source: str
    cluster: int  # the exported cluster id (clusters.csv), -1 when unlabelled
    label: int  # index into ExportSnapshot.names, -1 when unlabelled
    confidence: float
    known: bool  # in a known cluster of the graph (not a vote of the embedding)
    width: int
    height: int
    mime: str

    @property
    def file_name(self) -> str:
        """``<item_id>.<ext>``: unique in the project whatever the items' sources are called."""
        return f"{self.item_id}{_EXTENSIONS.get(self.mime, '.png')}"


@dataclass(frozen=True)
class ExportSnapshot:
    project_id: int
    project_name: str
    names: list[str]  # class names, in label order (a Hugging Face ClassLabel, COCO categories)
    items: list[ExportItem]  # every item of the project, by id
    embedding_version: int | None

    @property
    def labelled(self) -> int:
        return sum(1 for item in self.items if item.label != UNLABELLED)


def cluster_names(clusters: dict[int, int], known: dict[int, str]) -> dict[int, str]:
    """Name of each cluster id in ``clusters`` (item -> cluster): the known label most of its items with a
    known label carry (ties: the alphabetically first, so the name does not depend on row order), or
    ``cluster-<n>``. Two clusters may share a name: a kind the graph has not joined yet is still one kind."""
    votes: dict[int, Counter[str]] = defaultdict(Counter)
    for item, label in known.items():
        cluster = clusters.get(item, UNLABELLED)
        if cluster != UNLABELLED:
            votes[cluster][label] += 1
    names = {}
    for cluster in sorted(set(clusters.values()) - {UNLABELLED}):
        counts = votes.get(cluster)
        if counts:
            best = max(counts.values())
            names[cluster] = min(name for name, n in counts.items() if n == best)
        else:
            names[cluster] = f"cluster-{cluster}"
    return names


def class_list(names: dict[int, str]) -> tuple[list[str], dict[int, int]]:
    """(distinct names, cluster -> index into them). Known names come first, alphabetically, then the
    ``cluster-<n>`` ones by number: cluster ids follow cluster sizes and change as answers come in, so
    ordering classes by them would give a named class another index at the next export."""
    def key(name: str) -> tuple[int, str, int]:
        fallback = _FALLBACK.fullmatch(name)
        return (1, "", int(fallback.group(1))) if fallback else (0, name, 0)

    ordered = sorted(set(names.values()), key=key)
    index = {name: n for n, name in enumerate(ordered)}
    return ordered, {cluster: index[name] for cluster, name in names.items()}


def folder_names(names: list[str]) -> list[str]:
    """A file-system-safe folder name per class name (``T-shirt/top`` -> ``T-shirt_top``), distinct."""
    out: list[str] = []
    for n, name in enumerate(names):
        safe = _UNSAFE.sub("_", name).strip(" .") or f"class-{n}"
        if safe in out:
            safe = f"{safe}-{n}"
        out.append(safe)
    return out


def snapshot(sessions: sessionmaker[Session], project_id: int) -> ExportSnapshot:
    """Labels, names and image sizes of every item, as the graph and the embedding give them now."""
    with sessions() as db:
        project = db.get(models.Project, project_id)
        if project is None:
            raise LookupError(f"project {project_id} not found")
        name, version_id = project.name, project.current_embedding_id
        version = None if version_id is None else db.scalar(
            sa.select(models.EmbeddingVersion.version).where(models.EmbeddingVersion.id == version_id))
        table = cluster_table(db, project_id)
        known = {int(i): str(label) for i, label in db.execute(
            sa.select(models.KnownLabel.item_id, models.KnownLabel.label)
            .where(models.KnownLabel.project_id == project_id))}
        sizes = {int(r[0]): (int(r[1]), int(r[2]), str(r[3])) for r in db.execute(
            sa.select(models.Item.id, models.Item.width, models.Item.height, models.Item.mime)
            .where(models.Item.project_id == project_id))}
        db.rollback()
    clusters = {item: cluster for item, _s, cluster, _p, _k in table}
    names, to_label = class_list(cluster_names(clusters, known))
    items = []
    for item_id, source, cluster, confidence, in_known in sorted(table):
        width, height, mime = sizes.get(item_id, (0, 0, "image/png"))
        label = to_label.get(cluster, UNLABELLED)
        items.append(ExportItem(item_id=item_id, source=source, cluster=cluster, label=label,
                                confidence=confidence if label != UNLABELLED else 0.0, known=bool(in_known),
                                width=width, height=height, mime=mime))
    return ExportSnapshot(project_id=project_id, project_name=name, names=names, items=items,
                          embedding_version=None if version is None else int(version))


def iter_images(sessions: sessionmaker[Session], items: list[ExportItem],
                page: int = IMAGE_PAGE) -> Iterator[tuple[ExportItem, bytes]]:
    """(item, image bytes) for ``items`` in their order, read ``page`` at a time."""
    for start in range(0, len(items), page):
        chunk = items[start:start + page]
        with sessions() as db:
            blobs = dict(db.execute(sa.select(models.Item.id, models.Item.data)
                                    .where(models.Item.id.in_([i.item_id for i in chunk]))).tuples().all())
            db.rollback()
        for item in chunk:
            data = blobs.get(item.item_id)
            if data is not None:  # deleted since the snapshot: nothing to write
                yield item, data
        del blobs
