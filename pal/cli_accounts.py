"""The ``pal`` subcommands for accounts: users, their tokens and project members.

They work on the database directly (``PAL_DATABASE_URL``), for the operator of the server, and go
through the same services as the API (``server/services/users.py``): the same rules, the same
messages. A refused command prints one line and exits non-zero (``pal.cli.main`` turns the
services' errors into that line)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from pal.cli_parser import positive_int

Handler = Callable[[argparse.Namespace], int]
HANDLERS: dict[str, Handler] = {}


def _handler(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


def _db() -> Any:
    from pal.cli_parser import require_database
    from server.config import get_settings
    from server.db import get_sessionmaker

    require_database(get_settings().database_url)
    return get_sessionmaker()()


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


@_handler("user")
def cmd_user(args: argparse.Namespace) -> int:
    from server.admin import ensure_user
    from server.services import users

    with _db() as db:
        user = ensure_user(db, email=args.email, role=args.role, password=args.password, name=args.name)
        notes = []
        if args.disable or args.enable:
            users.set_active(db, user, bool(args.enable))
            notes.append("enabled" if args.enable else "disabled: its sessions ended, its tokens refused")
        if args.end_sessions:
            notes.append(f"{users.end_sessions(db, user.id)} session(s) ended")
        state = "" if user.is_active else ", disabled"
        print(f"user {user.id} {user.email} ({user.role}{state})" + "".join(f"; {n}" for n in notes))
    return 0


@_handler("users")
def cmd_users(args: argparse.Namespace) -> int:
    from server.services import users

    with _db() as db:
        rows = users.user_details(db)
    print(f"{'id':>5}  {'e-mail':<36} {'role':<10} {'state':<9} {'sessions':>8} {'tokens':>6}  projects")
    for u in rows:
        state = "active" if u.is_active else "disabled"
        projects = ",".join(str(p) for p in u.project_ids) or "-"
        print(f"{u.id:>5}  {u.email:<36} {u.role:<10} {state:<9} {u.sessions:>8} {u.tokens:>6}  {projects}")
    return 0


@_handler("projects")
def cmd_projects(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from server import models

    items = sa.select(sa.func.count()).where(models.Item.project_id == models.Project.id).scalar_subquery()
    members = (sa.select(sa.func.count()).where(models.ProjectMember.project_id == models.Project.id)
               .scalar_subquery())
    with _db() as db:
        rows = db.execute(sa.select(models.Project, items, members).order_by(models.Project.id)).all()
    print(f"{'id':>5}  {'name':<30} {'oracle':<12} {'items':>8} {'budget':>13} {'members':>7}  state")
    for project, n_items, n_members in rows:
        budget = f"{project.budget_spent}/{project.budget_cap}"
        state = "paused" if project.paused else "open"
        print(f"{project.id:>5}  {project.name[:30]:<30} {project.oracle:<12} {n_items:>8} {budget:>13} "
              f"{n_members:>7}  {state}")
    return 0


@_handler("token")
def cmd_token(args: argparse.Namespace) -> int:
    from server.services import users

    with _db() as db:
        if args.action == "revoke":
            if args.token_id is None:
                raise SystemExit("pal token revoke: give the token's id (pal token list --email E shows them)")
            token = users.revoke_token(db, args.token_id)
            print(f"token {token.id} ({token.name or 'unnamed'}) of user {token.user_id} revoked at "
                  f"{_when(token.revoked_at)}")
            return 0
        if not args.email:
            raise SystemExit(f"pal token {args.action}: --email is required")
        user = users.user_by_email(db, args.email)
        if args.action == "list":
            print(f"{'id':>5}  {'name':<20} {'created':<21} {'expires':<21} state")
            for t in users.list_tokens(db, user.id):
                state = "revoked" if t.revoked_at else ("expired" if _expired(t.expires_at) else "active")
                print(f"{t.id:>5}  {t.name:<20} {_when(t.created_at):<21} {_when(t.expires_at):<21} {state}")
            return 0
        print(users.create_token(db, user_id=user.id, name=args.name, expires_days=args.expires_days).token)
    return 0


def _expired(expires_at: Any) -> bool:
    from server.timeutil import as_utc, utcnow

    return expires_at is not None and as_utc(expires_at) <= utcnow()


@_handler("member")
def cmd_member(args: argparse.Namespace) -> int:
    from server.admin import find_project
    from server.services import users

    with _db() as db:
        project = find_project(db, args.project)
        if args.action == "list":
            for m in users.list_members(db, project.id):
                print(f"{m.user_id:>5}  {m.email:<36} {m.role:<10} {'active' if m.is_active else 'disabled'}")
            return 0
        if not args.email:
            raise SystemExit(f"pal member {args.action}: --email is required")
        user = users.user_by_email(db, args.email)
        if args.action == "add":
            added = users.add_member(db, project.id, user)
            print(f"{user.email} {'added to' if added else 'is already a member of'} project {project.name!r}")
        else:
            users.remove_member(db, project.id, user.id)
            print(f"{user.email} removed from project {project.name!r}; the grids they held went back to the pool")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("user", help="create or change a user: role, password, disable/enable, end sessions")
    p.add_argument("--email", required=True, help="the user's e-mail (creates the user when it is new)")
    p.add_argument("--role", choices=["admin", "annotator", "trainer"], default=None,
                   help="needed to create a user; changes an existing user's role")
    p.add_argument("--password", default=None,
                   help="set a password (at least 10 characters; ends the user's browser sessions)")
    p.add_argument("--name", default=None, help="display name")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--disable", action="store_true",
                       help="refuse the user's sign-ins, sessions and tokens from the next request on")
    state.add_argument("--enable", action="store_true", help="let a disabled user sign in again")
    p.add_argument("--end-sessions", action="store_true", help="sign the user out of every browser")

    sub.add_parser("users", help="list users with their live sessions, tokens and projects")
    sub.add_parser("projects", help="list projects with their items, budget and members")

    p = sub.add_parser("token", help="issue (printed once), list or revoke API tokens")
    p.add_argument("action", nargs="?", choices=["issue", "list", "revoke"], default="issue",
                   help="issue (the default), list (--email) or revoke TOKEN_ID")
    p.add_argument("token_id", nargs="?", type=positive_int, help="the token to revoke (see pal token list)")
    p.add_argument("--email", default=None, help="the token's user (issue, list)")
    p.add_argument("--name", default="cli", help="a name that says where the token is used")
    p.add_argument("--expires-days", type=positive_int, default=None,
                   help="the token stops working after this many days (default: until revoked)")

    p = sub.add_parser("member", help="list, add or remove the members of a project")
    p.add_argument("action", choices=["list", "add", "remove"])
    p.add_argument("--project", required=True, help="project id or name")
    p.add_argument("--email", default=None, help="the user to add or remove")
