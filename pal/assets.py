"""Where PAL's files that are not Python are: the Alembic migrations, the web UI's templates and static
assets, and the demo data.

A source checkout keeps them at the top level (``migrations/``, ``webui/``, ``demo/``); a built wheel
carries them inside the installed packages (``server/migrations``, ``server/webui``, ``pal/demo_data``:
the mapping is in setup.py), so an ordinary ``pip install`` gives a working ``pal`` with no checkout.
The installed place is tried first; a wheel is unpacked onto the file system, so plain paths are enough
(Jinja2, Starlette's StaticFiles and Alembic all want a directory)."""

from __future__ import annotations

from pathlib import Path

# the folder holding the ``pal`` and ``server`` packages: site-packages, or the checkout's root
_TOP = Path(__file__).resolve().parent.parent

# name -> (folder inside the installed packages, folder of the checkout)
_PLACES: dict[str, tuple[str, str]] = {
    "migrations": ("server/migrations", "migrations"),
    "webui": ("server/webui", "webui"),
    "demo": ("pal/demo_data", "demo"),
}


def asset_dir(name: str) -> Path:
    """The folder of asset ``name`` (``migrations``, ``webui`` or ``demo``), installed or checked out."""
    installed, checkout = _PLACES[name]
    for candidate in (_TOP / installed, _TOP / checkout):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"PAL's {name} folder is missing: looked in {_TOP / installed} and {_TOP / checkout} "
                            "(reinstall PAL, or run from a full source checkout)")


def checkout_root() -> Path | None:
    """The source checkout PAL runs from, or None when it runs from an installed package."""
    return _TOP if (_TOP / "pyproject.toml").is_file() and (_TOP / "pal").is_dir() else None
