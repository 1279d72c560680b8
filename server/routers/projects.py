"""Projects: create, read, update (budget, pause, query design), invites, imports."""

from __future__ import annotations

import tempfile
import zipfile
from datetime import timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, File, Request, UploadFile
from sqlalchemy.orm import Session

from server import models
from server.deps import AdminProject, AdminUser, CurrentUser, DbSession, ProjectDep, SettingsDep
from server.errors import ApiError
from server.schemas import (
    ImportFromPath,
    ImportReport,
    InviteCreate,
    InvitePublic,
    ProjectAnnotatorView,
    ProjectCreate,
    ProjectPublic,
    ProjectUpdate,
)
from server.security import hash_token, new_token
from server.services import imports
from server.services.projects import create_project, update_project
from server.timeutil import utcnow

router = APIRouter(prefix="/projects", tags=["projects"])


@router.post("", response_model=ProjectPublic, status_code=201)
def create(body: ProjectCreate, db: DbSession, _admin: AdminUser) -> models.Project:
    return create_project(db, body)


@router.get("", response_model=list[ProjectPublic] | list[ProjectAnnotatorView])
def list_projects(db: DbSession, user: CurrentUser) -> Any:
    query = sa.select(models.Project).order_by(models.Project.id)
    if user.role == "annotator":
        query = query.join(models.ProjectMember, models.ProjectMember.project_id == models.Project.id).where(
            models.ProjectMember.user_id == user.id
        )
        return [ProjectAnnotatorView.model_validate(p) for p in db.execute(query).scalars()]
    return [ProjectPublic.model_validate(p) for p in db.execute(query).scalars()]


@router.get("/{project_id}", response_model=ProjectPublic | ProjectAnnotatorView)
def read(project: ProjectDep, user: CurrentUser) -> Any:
    if user.role == "annotator":
        return ProjectAnnotatorView.model_validate(project)
    return ProjectPublic.model_validate(project)


@router.patch("/{project_id}", response_model=ProjectPublic)
def update(project: AdminProject, body: ProjectUpdate, db: DbSession) -> models.Project:
    update_project(db, project, body.model_dump(exclude_unset=True))
    return project


@router.post("/{project_id}/invites", response_model=InvitePublic, status_code=201)
def invite(project: AdminProject, body: InviteCreate, request: Request, db: DbSession,
           user: AdminUser) -> InvitePublic:
    token = new_token()
    row = models.Invite(token_hash=hash_token(token), project_id=project.id, email=body.email, created_by=user.id,
                        expires_at=utcnow() + timedelta(hours=body.expires_hours))
    db.add(row)
    db.commit()
    url = str(request.base_url).rstrip("/") + f"/login?invite={token}"
    return InvitePublic(id=row.id, project_id=project.id, token=token, url=url, expires_at=row.expires_at)


def _report(db: Session, project_id: int, result: imports.ImportResult) -> ImportReport:
    total = db.scalar(sa.select(sa.func.count()).where(models.Item.project_id == project_id)) or 0
    return ImportReport(imported=result.imported, skipped=result.skipped, total_items=total)


@router.post("/{project_id}/imports", response_model=ImportReport, status_code=201)
def import_upload(
    project: AdminProject, file: Annotated[UploadFile, File(description=".npz, .zip of an image folder, or one image")],
    db: DbSession, settings: SettingsDep,
) -> ImportReport:
    project_id = project.id
    limit = settings.max_upload_mb * 1024 * 1024
    with tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024) as tmp:
        size = 0
        while chunk := file.file.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "too_large", f"uploads are limited to {settings.max_upload_mb} MB", field="file")
            tmp.write(chunk)
        tmp.seek(0)
        name = (file.filename or "upload").lower()
        result = imports.ImportResult()
        try:
            if name.endswith(".npz"):
                with imports.open_npz(tmp) as npz:
                    sources = imports.npz_sources(npz)
                    imports.import_sources(db, project_id=project_id, sources=sources, result=result)
            elif name.endswith(".zip"):
                with zipfile.ZipFile(tmp) as archive:
                    sources, skipped = imports.zip_sources(archive)
                    result.skipped.extend(skipped)
                    imports.import_sources(db, project_id=project_id, sources=sources, result=result)
            else:
                raw = tmp.read()
                source = imports.Source(name=file.filename or "upload",
                                        load=lambda: imports.decode_bytes(raw))
                imports.import_sources(db, project_id=project_id, sources=[source], result=result)
        except (imports.ImportFormatError, zipfile.BadZipFile, ValueError) as exc:
            raise ApiError(422, "invalid_import", str(exc), field="file") from exc
    return _report(db, project_id, result)


@router.post("/{project_id}/imports/path", response_model=ImportReport, status_code=201)
def import_path(project: AdminProject, body: ImportFromPath, db: DbSession, settings: SettingsDep) -> ImportReport:
    """Import a folder or manifest that already lies on the server, below ``PAL_IMPORT_ROOT``."""
    project_id = project.id
    if settings.import_root is None:
        raise ApiError(403, "imports_disabled", "server-side imports are off (set PAL_IMPORT_ROOT)", field="path")
    root = settings.import_root.resolve()
    target = (root / body.path).resolve()
    if not target.is_relative_to(root) or not target.exists():
        raise ApiError(404, "not_found", "no such folder or manifest below the import root", field="path")
    result = imports.ImportResult()
    try:
        if target.is_dir():
            sources, skipped = imports.folder_sources(target, confine_to=root)
            result.skipped.extend(skipped)
        elif target.suffix.lower() == ".npz":
            with imports.open_npz(target) as npz:
                imports.import_sources(db, project_id=project_id, sources=imports.npz_sources(npz), result=result)
            return _report(db, project_id, result)
        else:
            sources = imports.manifest_sources(target, root=root)
        imports.import_sources(db, project_id=project_id, sources=sources, result=result)
    except (imports.ImportFormatError, ValueError) as exc:
        raise ApiError(422, "invalid_import", str(exc), field="path") from exc
    return _report(db, project_id, result)


