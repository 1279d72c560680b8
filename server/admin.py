"""Administrative operations used by the ``pal`` command line (direct database access)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.orm import Session

from server import models
from server.errors import ApiError
from server.passwords import password_problem
from server.schemas import ProjectCreate
from server.security import hash_password
from server.services import imports
from server.services.projects import create_project
from server.services.users import create_token


def ensure_user(db: Session, *, email: str, role: str | None, password: str | None,
                name: str | None = "") -> models.User:
    """Create or update a user; a password that breaks the policy exits with the rule on one line.
    A new password for an existing user ends their browser sessions (whoever knew the old one is
    signed out); ``None`` leaves the role or name as they are."""
    if password:
        problem = password_problem(password, email)
        if problem:
            raise SystemExit(f"password: {problem}")
    user = db.execute(sa.select(models.User).where(sa.func.lower(models.User.email) == email.strip().lower())
                      ).scalar_one_or_none()
    if user is None:
        if role is None:
            raise SystemExit(f"no user with e-mail {email}; give --role to create one")
        user = models.User(email=email, name=name or "", role=role)
        db.add(user)
    if role is not None:
        user.role = role
    if name is not None:
        user.name = name
    if password:
        user.password_hash = hash_password(password)
        if user.id is not None:
            db.execute(sa.delete(models.WebSession).where(models.WebSession.user_id == user.id))
    db.commit()
    return user


def new_token_for(db: Session, *, email: str, name: str = "cli") -> str:
    user = db.execute(sa.select(models.User).where(models.User.email == email)).scalar_one_or_none()
    if user is None:
        raise SystemExit(f"no user with e-mail {email}")
    return create_token(db, user_id=user.id, name=name).token


def find_project(db: Session, ref: str) -> models.Project:
    project = db.get(models.Project, int(ref)) if ref.isdigit() else None
    if project is None:
        project = db.execute(sa.select(models.Project).where(models.Project.name == ref)).scalar_one_or_none()
    if project is None:
        raise SystemExit(f"no project {ref!r}")
    return project


def ensure_project(db: Session, body: ProjectCreate) -> models.Project:
    existing = db.execute(sa.select(models.Project).where(models.Project.name == body.name)).scalar_one_or_none()
    if existing is not None:
        return existing
    try:
        return create_project(db, body)
    except ApiError as exc:
        raise SystemExit(exc.message) from exc


def import_path(db: Session, *, project_id: int, path: Path, show_progress: bool = True) -> imports.ImportResult:
    """Import a folder, a CSV/JSONL manifest or an .npz, with a progress bar. A refused import
    (stores nothing) exits with its reason on one line."""
    try:
        return _import_path(db, project_id=project_id, path=path, show_progress=show_progress)
    except (imports.ImportFormatError, ValueError) as exc:
        raise SystemExit(f"{path}: {exc}") from exc


def _import_path(db: Session, *, project_id: int, path: Path, show_progress: bool) -> imports.ImportResult:
    result = imports.ImportResult()
    npz = None
    if not path.exists():
        raise SystemExit(f"{path}: not found")
    if path.is_dir():
        sources, skipped = imports.folder_sources(path)
        result.skipped.extend(skipped)
    elif path.suffix.lower() == ".npz":
        npz = imports.open_npz(path)
        sources = imports.npz_sources(npz)
    elif path.suffix.lower() in (".csv", ".jsonl", ".ndjson"):
        sources = imports.manifest_sources(path)
    else:
        raise SystemExit(f"{path}: give a folder, a .csv/.jsonl manifest or an .npz")
    try:
        with Progress(TextColumn("[bold]import"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      disable=not show_progress) as progress:
            bar = progress.add_task("import", total=len(sources))
            imports.import_sources(db, project_id=project_id, sources=sources, result=result,
                                   on_progress=lambda n: progress.advance(bar, n))
    finally:
        if npz is not None:
            npz.close()
    return result
