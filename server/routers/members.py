"""Project members (admin): who may annotate a project. Admins and trainers see every project;
annotators only those they are members of, so removing a member locks them out of it at once."""

from __future__ import annotations

from fastapi import APIRouter, Response

from server.deps import AdminProject, DbSession
from server.schemas_accounts import MemberAdd, MemberPublic
from server.services import users

router = APIRouter(prefix="/projects/{project_id}/members", tags=["members"])


@router.get("", response_model=list[MemberPublic])
def list_members(project: AdminProject, db: DbSession) -> list[MemberPublic]:
    return users.list_members(db, project.id)


@router.post("", response_model=MemberPublic, status_code=201,
             responses={200: {"model": MemberPublic, "description": "the user was a member already"}})
def add_member_by_email(project: AdminProject, body: MemberAdd, response: Response, db: DbSession) -> MemberPublic:
    """Add an existing user (an annotator who already has an account joins a second project)."""
    user = users.user_by_email(db, body.email)
    if not users.add_member(db, project.id, user):
        response.status_code = 200
    return next(m for m in users.list_members(db, project.id) if m.user_id == user.id)


@router.post("/{user_id}", status_code=204)
def add_member(project: AdminProject, user_id: int, db: DbSession) -> Response:
    users.add_member(db, project.id, users.get_user(db, user_id))
    return Response(status_code=204)


@router.delete("/{user_id}", status_code=204)
def remove_member(project: AdminProject, user_id: int, db: DbSession) -> Response:
    users.remove_member(db, project.id, user_id)
    return Response(status_code=204)
