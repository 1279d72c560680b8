"""Naming the exported clusters and what every dataset export reads (server/services/export_items.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server.services import project_state
from server.services.export_formats import write_format
from server.services.export_items import class_list, cluster_names, folder_names, iter_images, snapshot
from tests.support import make_project


def test_cluster_names_take_the_most_frequent_known_label() -> None:
    clusters = {1: 0, 2: 0, 3: 0, 4: 1, 5: 1}
    known = {1: "cat", 2: "cat", 3: "dog", 4: "dog"}
    assert cluster_names(clusters, known) == {0: "cat", 1: "dog"}


def test_cluster_names_break_ties_alphabetically_whatever_the_order() -> None:
    clusters = {1: 0, 2: 0}
    assert cluster_names(clusters, {1: "zebra", 2: "ant"}) == cluster_names(clusters, {2: "ant", 1: "zebra"}) \
        == {0: "ant"}


def test_cluster_names_fall_back_to_the_cluster_number_and_skip_unlabelled() -> None:
    clusters = {1: 0, 2: 3, 3: -1}
    assert cluster_names(clusters, {1: "cat", 3: "dog"}) == {0: "cat", 3: "cluster-3"}


def test_class_list_gives_clusters_of_one_name_one_class() -> None:
    names, to_label = class_list({0: "dog", 1: "cat", 2: "dog", 5: "cluster-5"})
    assert names == ["cat", "dog", "cluster-5"]
    assert to_label == {0: 1, 1: 0, 2: 1, 5: 2}


def test_class_list_orders_names_alphabetically_then_unnamed_clusters_by_number() -> None:
    # not by cluster id: ids follow sizes, so a named class would change index between exports
    names, _ = class_list({0: "cluster-0", 1: "zebra", 2: "cluster-10", 3: "ant", 4: "cluster-2"})
    assert names == ["ant", "zebra", "cluster-0", "cluster-2", "cluster-10"]


def test_folder_names_are_safe_and_distinct() -> None:
    assert folder_names(["T-shirt/top", "a\\b", "..", "T-shirt_top", "ok"]) == \
        ["T-shirt_top", "a_b", "class-2", "T-shirt_top-3", "ok"]


def test_iter_images_reads_every_item_in_pages(db: Session, engine: sa.Engine) -> None:
    pid = make_project(db, n_items=7)
    project_state._states.pop(pid, None)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    snap = snapshot(sessions, pid)
    got = list(iter_images(sessions, snap.items, page=3))
    assert [item.item_id for item, _data in got] == [item.item_id for item in snap.items]
    assert all(data.startswith(b"\x89PNG") for _item, data in got)


@pytest.mark.parametrize("fmt", ["imagefolder", "hf", "label-studio", "coco"])
def test_a_project_with_no_cluster_yet_exports_every_item_unlabelled(db: Session, engine: sa.Engine,
                                                                     tmp_path: Path, fmt: str) -> None:
    if fmt == "hf":
        pytest.importorskip("datasets")
    pid = make_project(db, n_items=5)
    project_state._states.pop(pid, None)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    snap = snapshot(sessions, pid)
    assert snap.names == [] and snap.labelled == 0
    write_format(sessions, snap, fmt, tmp_path / fmt)
    if fmt == "imagefolder":
        assert sorted(p.name for p in (tmp_path / fmt).iterdir()) == ["metadata.csv"]
    elif fmt == "label-studio":
        tasks = json.loads((tmp_path / fmt / "tasks.json").read_text())
        assert len(tasks) == 5 and not any("predictions" in t for t in tasks)
    elif fmt == "coco":
        doc = json.loads((tmp_path / fmt / "coco.json").read_text())
        assert len(doc["images"]) == 5 and doc["annotations"] == [] and doc["categories"] == []
    else:
        import datasets

        ds = datasets.load_from_disk(str(tmp_path / fmt))
        assert ds["label"] == [-1] * 5 and ds.features["label"].names == []
