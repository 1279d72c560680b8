"""A minimal trainer stand-in: polls the edge feed and logs what it consumed.

Each consumed page is one JSON line ``{"cursor": <next_cursor>, "ids": [edge ids]}``, flushed
before the next poll, so the log is the poller's checkpoint: a restarted poller (after kill -9)
cuts a torn last line and resumes from the last complete one. ``pal audit --trainer-log`` compares
the log with the database: every edge below the final cursor consumed exactly once.

    python -m bench.poller --server URL --token T --project P --log FILE [--interval 0.5]
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path
from types import FrameType

import httpx

from pal.wire import START_CURSOR


def resume(log: Path) -> str:
    """The last complete line's cursor, after cutting a torn last line (killed mid-write)."""
    if not log.exists():
        return START_CURSOR
    data = log.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with log.open("r+b") as f:
            f.truncate(end)
    cursor = START_CURSOR
    for line in data[:end].splitlines():
        if line.strip():
            cursor = json.loads(line)["cursor"]
    return cursor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.poller", description=__doc__)
    parser.add_argument("--server", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--project", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--page", type=int, default=5000)
    args = parser.parse_args(argv)
    stop = False

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    cursor = resume(args.log)
    headers = {"Authorization": f"Bearer {args.token}"}
    with httpx.Client(base_url=args.server, headers=headers, timeout=30) as client, args.log.open("a") as out:
        while not stop:
            try:
                resp = client.get(f"/api/v1/projects/{args.project}/edges",
                                  params={"cursor": cursor, "limit": args.page})
            except httpx.HTTPError:
                time.sleep(0.5)  # server restarting or overloaded: try again
                continue
            if resp.status_code != 200:
                time.sleep(float(resp.headers.get("Retry-After", "0.5")))
                continue
            page = resp.json()
            ids = [e["id"] for e in page["edges"]]
            if ids:
                out.write(json.dumps({"cursor": page["next_cursor"], "ids": ids}) + "\n")
                out.flush()
            cursor = page["next_cursor"]
            if not page["has_more"]:
                time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
