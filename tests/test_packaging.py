"""PAL as an ordinary package: the wheel built from this checkout, installed (not editable, no
dependencies) into a fresh virtual environment outside the checkout, runs ``pal migrate``, ``pal import``
of the demo data it ships, ``pal demo --setup-only`` and ``pal serve`` (the sign-in page and its
stylesheet), finding its migrations, templates, static files and demo data inside the installed package.

The new environment reuses the running interpreter's installed dependencies through a ``.pth`` line
(``venv --system-site-packages`` would reach the base interpreter's, not this virtual environment's),
so nothing is downloaded and torch is not installed twice; that line does not run the ``.pth`` files
of that folder, so an editable PAL installed there stays invisible. Marked slow: it builds a wheel
(30 to 90 s on two shared cores)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# What the wheel is built from (pyproject.toml and setup.py say what goes in): copied, so the build's
# build/ and egg-info never land in the checkout.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "pal", "server", "trainer", "bench", "migrations", "webui",
           "demo")


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    # The running environment's setuptools: the package index may be out of reach from a test.
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "dist")], cwd=src, check=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("pal_labelling-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "zz_pal_test_dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, timeout=300)
    return env_dir


def _run(env_dir: Path, cwd: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([str(env_dir / "bin" / "pal"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"pal {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_wheel_installed_outside_the_checkout_migrates_imports_and_serves(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    env_dir = _fresh_venv(tmp_path, wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PAL_")}
    env.update(PAL_DATABASE_URL=f"sqlite:///{work / 'pal.sqlite3'}", PAL_DATA_DIR=str(work / "data"))
    where = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c",
         "import pal, server; from pal.assets import asset_dir; "
         "print(pal.__file__); print(server.__file__); print(asset_dir('demo') / 'fashion-mnist-demo.npz')"],
        cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(env_dir) for p in where), where  # the wheel's copy, not the checkout
    demo = Path(where[2])

    assert "database at head" in _run(env_dir, work, env, "migrate")
    _run(env_dir, work, env, "project", "--name", "from-wheel")
    out = _run(env_dir, work, env, "import", "--project", "from-wheel", str(demo), "--quiet")
    assert "3000" in out, out
    # pal demo finds the same data inside the package (its own project, admin and trainer token)
    assert "imported 3000 demo images" in _run(env_dir, work, env, "demo", "--setup-only")

    port = free_port()
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen([str(env_dir / "bin" / "pal"), "serve", "--port", str(port)], cwd=work, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        page = _get_when_up(f"http://127.0.0.1:{port}/login", server)
        assert page.status_code == 200 and "<form" in page.text
        css = re.search(r'href="(/static/css/[^"]+)"', page.text)
        assert css, page.text[:500]
        style = httpx.get(f"http://127.0.0.1:{port}{css.group(1)}", timeout=10)
        assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
        assert style.content == (ROOT / "webui" / "static" / "css" / "app.css").read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _get_when_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "pal serve exited"
        try:
            return httpx.get(url, timeout=5)
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s")
