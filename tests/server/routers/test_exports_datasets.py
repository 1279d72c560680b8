"""The labelled-dataset exports over HTTP (real uvicorn): admin only, streamed as ZIP or JSON, the same
files as ``pal export --format F``; and ``pal export``'s handling of the format name."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.export import main as export_main
from tests.conftest import LiveServer
from tests.support import make_user
from tests.support_exports import NAMES, make_labelled_project

ROOT = Path(__file__).resolve().parents[3]
DATASET_FORMATS = ("imagefolder", "hf", "label-studio", "coco")
ZIP_FILES = {"imagefolder": "metadata.csv", "hf": "parquet/data.parquet", "label-studio": "tasks.json",
             "coco": "coco.json"}


@pytest.mark.parametrize("fmt", DATASET_FORMATS)
def test_dataset_zip_streams_the_format_for_an_admin(live_server: LiveServer, db: Session, engine: sa.Engine,
                                                     database_url: str, fmt: str) -> None:
    if fmt == "hf":
        pytest.importorskip("datasets")
    project = make_labelled_project(db, engine, database_url)
    admin = make_user(db, "admin")
    with live_server.client(admin.token) as client:
        resp = client.get(f"/api/v1/projects/{project.pid}/exports/{fmt}.zip")
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["content-type"] == "application/zip"
    assert "content-length" not in resp.headers  # streamed, not built whole first
    names = zipfile.ZipFile(io.BytesIO(resp.content)).namelist()
    prefix = f"pal-project-{project.pid}-{fmt}/"
    assert all(name.startswith(prefix) for name in names)
    assert prefix + ZIP_FILES[fmt] in names
    if fmt == "imagefolder":
        assert sum(name.endswith(".png") for name in names) == 18  # the unlabelled 6 are left out


def test_coco_and_label_studio_json_come_bare_too(live_server: LiveServer, db: Session, engine: sa.Engine,
                                                  database_url: str) -> None:
    project = make_labelled_project(db, engine, database_url)
    admin = make_user(db, "admin")
    with live_server.client(admin.token) as client:
        coco = client.get(f"/api/v1/projects/{project.pid}/exports/coco.json")
        tasks = client.get(f"/api/v1/projects/{project.pid}/exports/label-studio.json")
    assert coco.status_code == tasks.status_code == 200
    assert sorted(c["name"] for c in coco.json()["categories"]) == sorted(NAMES.values())
    body = tasks.json()
    assert len(body) == 24
    # The image URLs point back at the server that exported them.
    assert body[0]["data"]["image"] == f"{live_server.url}/api/v1/items/{body[0]['data']['item_id']}/image"


@pytest.mark.parametrize("path", ["imagefolder.zip", "hf.zip", "label-studio.zip", "coco.zip", "coco.json",
                                  "label-studio.json"])
def test_dataset_exports_are_for_admins_only(live_server: LiveServer, db: Session, engine: sa.Engine,
                                             database_url: str, path: str) -> None:
    project = make_labelled_project(db, engine, database_url)
    annotator, trainer = make_user(db, "annotator"), make_user(db, "trainer")
    for actor in (annotator, trainer):
        with live_server.client(actor.token) as client:
            assert client.get(f"/api/v1/projects/{project.pid}/exports/{path}").status_code == 403
    with live_server.client() as client:
        assert client.get(f"/api/v1/projects/{project.pid}/exports/{path}").status_code == 401


def test_unknown_dataset_format_is_a_404_naming_the_formats(live_server: LiveServer, db: Session,
                                                            engine: sa.Engine, database_url: str) -> None:
    project = make_labelled_project(db, engine, database_url)
    admin = make_user(db, "admin")
    with live_server.client(admin.token) as client:
        resp = client.get(f"/api/v1/projects/{project.pid}/exports/yolo.zip")
    assert resp.status_code == 404 and "imagefolder" in resp.text


@pytest.mark.parametrize("fmt", DATASET_FORMATS)
def test_pal_export_writes_each_format(db: Session, engine: sa.Engine, database_url: str, tmp_path: Path,
                                       fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    if fmt == "hf":
        pytest.importorskip("datasets")
    project = make_labelled_project(db, engine, database_url)
    out = tmp_path / fmt
    assert export_main(["--project", str(project.pid), "--out", str(out), "--format", fmt,
                        "--database-url", database_url, "--quiet"]) == 0
    assert (out / ZIP_FILES[fmt]).is_file()
    assert "24 items, 18 labelled (6 unlabelled), 3 classes" in capsys.readouterr().out


def test_pal_export_with_an_unknown_format_says_so_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pal.cli", "export", "--project", "1", "--out", str(tmp_path / "x"),
         "--format", "yolo", "--database-url", f"sqlite:///{tmp_path / 'none.sqlite3'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown format 'yolo'" in lines[0] and "label-studio" in lines[0], proc.stderr
    assert not (tmp_path / "x").exists()


def test_pal_export_hf_without_its_libraries_says_what_to_install(db: Session, engine: sa.Engine, database_url: str,
                                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from server.services.export_formats import hf

    def missing() -> None:
        raise hf.MissingExtra("the hf format needs datasets and pyarrow: pip install 'pal-labelling[export]'")

    monkeypatch.setattr(hf, "_libraries", missing)
    project = make_labelled_project(db, engine, database_url)
    assert export_main(["--project", str(project.pid), "--out", str(tmp_path / "hf"), "--format", "hf",
                        "--database-url", database_url, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pal-labelling[export]" in err[0]
