"""The newcomer path, executed for real: the ``bash quickstart`` blocks of docs/quickstart.md run in
order in one bash session (real `pal` commands, a real server, the real trainer), then the exported
labels are checked. The commands come from the markdown itself, so docs and test cannot drift.

A block tagged ``trainer`` is skipped, with a message, when the trainer is not in the tree."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from bench.cli import BENCHMARKS
from server.config_doc import render
from server.services.export import CLUSTER_COLUMNS
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\s*$", re.S | re.M)


def blocks(path: Path, tag: str) -> list[tuple[set[str], str]]:
    """(tags, code) of the fenced blocks whose info string is ``bash <tag> ...``."""
    out = []
    for info, code in FENCE.findall(path.read_text()):
        words = info.split()
        if len(words) >= 2 and words[0] == "bash" and words[1] == tag:
            out.append((set(words[2:]), code))
    return out


def test_quickstart_has_the_documented_steps() -> None:
    code = "\n".join(c for _tags, c in blocks(QUICKSTART, "quickstart"))
    for step in ("pal migrate", "pal user", "pal project", "demo/make_demo_folder.py", "pal import", "pal serve",
                 "/tasks/claim", "pal train", "pal export"):
        assert step in code, step


@pytest.fixture
def pal_on_path(tmp_path: Path) -> str:
    """PATH with the virtual environment first, and a `pal` shim when PAL is not pip-installed."""
    bin_dir = Path(sys.executable).parent
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    if not (bin_dir / "pal").exists():
        shim = tmp_path / "bin"
        shim.mkdir()
        (shim / "pal").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pal.cli "$@"\n')
        (shim / "pal").chmod(0o755)
        path = f"{shim}{os.pathsep}{path}"
    return path


@pytest.mark.slow
def test_quickstart_runs_and_exports_labels(tmp_path: Path, pal_on_path: str) -> None:
    script = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    skipped = []
    for tags, code in blocks(QUICKSTART, "quickstart"):
        if "trainer" in tags and not (ROOT / "trainer" / "loop.py").exists():
            skipped.append(code.strip().splitlines()[0])
            continue
        script.append(code)
    for line in skipped:
        message = f"quickstart step skipped: trainer/loop.py is not in the tree yet: {line}"
        print(message)
        warnings.warn(message, stacklevel=1)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAL_")}
    env.update({"WORK": str(work), "PAL_PORT": str(free_port()), "PATH": pal_on_path, "PYTHONPATH": str(ROOT),
                "PAL_SECRET_KEY": "quickstart-test"})
    run = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=420)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-4000:]}\nstderr:\n{run.stderr[-4000:]}"

    export = work / "export"
    rows = list(csv.DictReader((export / "clusters.csv").open()))
    assert tuple(rows[0]) == CLUSTER_COLUMNS
    assert len(rows) == 200
    assert sum(r["known"] == "1" for r in rows) >= 2  # the answers joined some items
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["counts"]["answers"] == 40
    for f in manifest["files"]:
        assert hashlib.sha256((export / f["name"]).read_bytes()).hexdigest() == f["sha256"]
    if not skipped:
        assert manifest["embedding"] is not None  # the trainer published a version
        known = sum(r["known"] == "1" for r in rows)
        assigned = sum(int(r["cluster"]) >= 0 for r in rows)
        assert assigned > known  # the embedding carried the clusters to unanswered items


def test_configuration_doc_is_up_to_date() -> None:
    """docs/configuration.md is generated from server/config.py: `python -m server.config_doc`."""
    assert (ROOT / "docs" / "configuration.md").read_text() == render()


DOCS = ["architecture.md", "operations.md", "api.md", "datasets.md", "quickstart.md", "exports.md"]


@pytest.mark.parametrize("doc", DOCS)
def test_docs_link_only_to_files_that_exist(doc: str) -> None:
    text = (ROOT / "docs" / doc).read_text()
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (ROOT / "docs" / target).exists() and not (ROOT / target).exists():
            missing.append(target)
    assert missing == []


def test_readme_links_only_to_files_that_exist() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert missing == []


@pytest.mark.parametrize("doc", ["README.md", *(f"docs/{d}" for d in DOCS)])
def test_documented_commands_exist(doc: str) -> None:
    """Every ``python -m MODULE`` of this tree and every ``pal bench NAME`` that a document names runs."""
    text = (ROOT / doc).read_text()
    modules = re.findall(r"python -m ((?:pal|server|trainer|bench|research)\.[\w.]+)", text)
    assert [m for m in modules if importlib.util.find_spec(m) is None] == []
    benchmarks = re.findall(r"pal bench ([a-z][a-z-]*)", text)
    assert [b for b in benchmarks if b not in BENCHMARKS] == []
