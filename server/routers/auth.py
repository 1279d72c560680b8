"""Sign-in for browsers (cookie session + CSRF token) and invite acceptance."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response

from server import models
from server.deps import SESSION_COOKIE, CurrentUser, DbSession, SettingsDep
from server.errors import ApiError
from server.schemas import InviteAccept, LoginRequest, LoginResponse, UserPublic
from server.schemas_accounts import PasswordChange
from server.security import hash_password, hash_token, new_token, verify_password
from server.services import login_throttle, users
from server.timeutil import as_utc, utcnow

router = APIRouter(prefix="/auth", tags=["auth"])


def client_address(request: Request) -> str:
    """The client's address: the TCP peer, or, when the peer is one of ``PAL_TRUSTED_PROXIES``, the
    address that proxy forwarded (resolved by the proxy-headers middleware in server/main.py)."""
    return request.client.host if request.client else "?"


def start_session(db: DbSession, response: Response, user: models.User, settings: SettingsDep,
                  old_cookie: str | None) -> str:
    """A fresh session id on every sign-in (no session fixation); the old one is deleted."""
    if old_cookie:
        db.execute(sa.delete(models.WebSession).where(models.WebSession.token_hash == hash_token(old_cookie)))
    token, csrf = new_token(), new_token()
    db.add(models.WebSession(
        token_hash=hash_token(token), user_id=user.id, csrf_token=csrf,
        expires_at=utcnow() + timedelta(hours=settings.session_hours),
    ))
    db.commit()
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="lax", secure=settings.cookie_secure,
        max_age=settings.session_hours * 3600, path="/",
    )
    return csrf


@router.post("/login", response_model=LoginResponse)
def login(body: LoginRequest, request: Request, response: Response, db: DbSession,
          settings: SettingsDep) -> LoginResponse:
    client = client_address(request)
    if login_throttle.blocked(db, settings, client=client, email=body.email):
        raise ApiError(429, "too_many_attempts", "too many failed sign-ins; wait a minute",
                       headers={"Retry-After": "60"})
    user = db.execute(sa.select(models.User).where(sa.func.lower(models.User.email) == body.email.lower())
                      ).scalar_one_or_none()
    if not verify_password(body.password, user.password_hash if user else None) or user is None \
            or not user.is_active:
        login_throttle.record_failure(db, client=client, email=body.email)
        raise ApiError(401, "bad_credentials", "wrong e-mail or password", field="password")
    login_throttle.clear(db, client=client, email=body.email)
    csrf = start_session(db, response, user, settings, request.cookies.get(SESSION_COOKIE))
    return LoginResponse(user=UserPublic.model_validate(user), csrf_token=csrf)


@router.post("/logout", status_code=204)
def logout(request: Request, response: Response, db: DbSession, _user: CurrentUser) -> Response:
    if cookie := request.cookies.get(SESSION_COOKIE):
        db.execute(sa.delete(models.WebSession).where(models.WebSession.token_hash == hash_token(cookie)))
        db.commit()
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.status_code = 204
    return response


@router.get("/me", response_model=LoginResponse)
def me(request: Request, db: DbSession, user: CurrentUser) -> LoginResponse:
    csrf = ""
    if cookie := request.cookies.get(SESSION_COOKIE):
        ws = db.get(models.WebSession, hash_token(cookie))
        csrf = ws.csrf_token if ws else ""
    return LoginResponse(user=UserPublic.model_validate(user), csrf_token=csrf)


@router.post("/password", status_code=204)
def change_password(body: PasswordChange, request: Request, db: DbSession, user: CurrentUser,
                    settings: SettingsDep) -> Response:
    """Change one's own password. Every other session of the account ends (the one making the change
    stays signed in); API tokens are not touched (revoke them separately)."""
    stored = db.get(models.User, user.id)
    assert stored is not None
    # Throttled like sign-in: a stolen session must not become a way to guess the password.
    client = client_address(request)
    if login_throttle.blocked(db, settings, client=client, email=stored.email):
        raise ApiError(429, "too_many_attempts", "too many wrong passwords; wait a minute",
                       headers={"Retry-After": "60"})
    if not verify_password(body.current_password, stored.password_hash):
        login_throttle.record_failure(db, client=client, email=stored.email)
        raise ApiError(401, "bad_credentials", "the current password is wrong", field="current_password")
    cookie = request.cookies.get(SESSION_COOKIE)
    users.set_password(db, stored, body.new_password, keep=hash_token(cookie) if cookie else None,
                       field="new_password")
    return Response(status_code=204)


# Refused acceptances one invite link takes before it is spent: enough for typos, too few to probe
# which e-mail addresses have accounts (or to guess an account's password) through one link.
INVITE_TRIES = 5


def _refuse_invite(db: DbSession, invite: models.Invite, error: ApiError) -> ApiError:
    """Count a refused try on the invite (the link dies at ``INVITE_TRIES``) and commit it."""
    invite.failed_attempts += 1
    if invite.failed_attempts >= INVITE_TRIES:
        invite.used_at = utcnow()  # spent: "unknown, used or expired" from now on
    db.commit()
    return error


@router.post("/invites/{token}/accept", response_model=LoginResponse)
def accept_invite(token: str, body: InviteAccept, request: Request, response: Response, db: DbSession,
                  settings: SettingsDep) -> LoginResponse:
    """Join the invite's project: a new e-mail gets a new annotator account; the e-mail of an existing
    account joins with that account's password (an annotator can be invited to a second project).
    A wrong password for an existing account gets the same answer as a wrong sign-in, never "this
    e-mail exists", and every refused try counts against the link."""
    invite = db.execute(
        sa.select(models.Invite).where(models.Invite.token_hash == hash_token(token)).with_for_update()
    ).scalar_one_or_none()
    if invite is None or invite.used_at is not None or as_utc(invite.expires_at) < utcnow():
        raise ApiError(404, "invite_invalid", "this invite link is unknown, used or expired", field="token")
    if invite.email and invite.email.lower() != body.email.lower():
        raise _refuse_invite(db, invite, ApiError(422, "invite_email", "this invite is for another e-mail address",
                                                  field="email"))
    user = db.execute(sa.select(models.User).where(sa.func.lower(models.User.email) == body.email.lower())
                      ).scalar_one_or_none()
    if user is None:
        user = models.User(email=body.email, name=body.name, role="annotator",
                           password_hash=hash_password(body.password))
        db.add(user)
        db.flush()
    elif not verify_password(body.password, user.password_hash) or not user.is_active:
        raise _refuse_invite(db, invite, ApiError(
            401, "bad_credentials", "wrong e-mail or password (to join with an account you have, give its "
            "password)", field="password"))
    if db.get(models.ProjectMember, (invite.project_id, user.id)) is None:
        db.add(models.ProjectMember(project_id=invite.project_id, user_id=user.id))
    invite.used_by, invite.used_at = user.id, utcnow()
    db.commit()
    csrf = start_session(db, response, user, settings, request.cookies.get(SESSION_COOKIE))
    return LoginResponse(user=UserPublic.model_validate(user), csrf_token=csrf)
