"""``pal demo`` as a process: SIGTERM stops the server and the trainer it started, and the trainer's
token is not on any command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc: no psutil needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_demo_sigterm_stops_server_and_trainer(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PAL_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}", "PAL_DATA_DIR": str(tmp_path),
           "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen([sys.executable, "-m", "pal.cli", "demo", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and demo.poll() is None:
            children = _children(demo.pid)
            try:
                healthy = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy and len(children) == 2:  # uvicorn and the trainer
                break
            time.sleep(0.5)
        assert len(children) == 2, (tmp_path / "demo.log").read_text()[-3000:]
        cmdlines = [Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ").decode() for c in children]
        trainer = next(line for line in cmdlines if " train " in line)
        token_on_command_line = "--token" in trainer

        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 0
        stop = time.monotonic() + 10
        while any(_alive(c) for c in children) and time.monotonic() < stop:
            time.sleep(0.2)
        assert not [c for c in children if _alive(c)], "pal demo left its server or trainer running"
        assert not token_on_command_line  # it travels in the environment (PAL_TOKEN), out of ps's sight
    finally:  # whatever happened, leave no process of ours behind
        for child in children + (_children(demo.pid) if demo.poll() is None else []):
            if _alive(child):
                os.kill(child, signal.SIGKILL)
        if demo.poll() is None:
            demo.kill()
