"""The dashboard's labelled-dataset exports in a real Chromium: every link downloads its format."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from tests.conftest import LiveServer
from tests.support import make_user
from tests.support_exports import NAMES, make_labelled_project
from tests.webui.conftest import Watched

pytestmark = pytest.mark.browser

# link -> a file the download must hold (ZIP) or None (bare JSON)
LINKS = {"imagefolder.zip": "metadata.csv", "hf.zip": "parquet/data.parquet", "label-studio.zip": "tasks.json",
         "label-studio.json": None, "coco.json": None}


def test_admin_downloads_every_dataset_format_from_the_dashboard(
    open_context: Callable[..., Watched], web_db: Session, web_server: LiveServer, web_database_url: str,
) -> None:
    pytest.importorskip("datasets")
    bind = web_db.get_bind()
    project = make_labelled_project(web_db, bind, web_database_url)  # type: ignore[arg-type]
    admin = make_user(web_db, "admin")
    ctx = open_context()
    ctx.login(admin.email)
    page = ctx.page()
    page.goto(f"/admin/projects/{project.pid}")
    for name, inside in LINKS.items():
        link = page.locator(f"#dataset-exports a[href$='/exports/{name}']")
        with page.expect_download() as info:
            link.click()
        body = Path(info.value.path()).read_bytes()
        if inside is None:
            doc = json.loads(body)
            assert len(doc) == 24 if name == "label-studio.json" else len(doc["images"]) == 24
        else:
            names = zipfile.ZipFile(io.BytesIO(body)).namelist()
            assert any(n.endswith("/" + inside) for n in names), (name, names[:5])
    coco = json.loads(Path(info.value.path()).read_bytes())
    assert sorted(c["name"] for c in coco["categories"]) == sorted(NAMES.values())
