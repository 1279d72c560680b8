"""The argument parser every ``pal`` command uses: a usage error is one line on stderr and exit 2
(the usage itself is one ``--help`` away), never argparse's usage block."""

from __future__ import annotations

import argparse
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """argparse type: a whole number of 1 or more (ports, workers)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return value


class MissingDatabase(Exception):
    """The SQLite file a command would read does not exist (refused before SQLite creates it empty)."""


def require_database(database_url: str) -> None:
    """Refuse a command that reads the database when the SQLite file is missing: connecting would
    create an empty file (``./var/pal.sqlite3`` in whatever folder the command runs in) and the
    command would then fail on a missing table."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    from pathlib import Path

    if not Path(url.database).exists():
        raise MissingDatabase(f"no database at {url.database} (set PAL_DATABASE_URL, or run pal migrate to "
                              "create it)")
