"""Sign-in throttling over real HTTP, on ``pal serve`` as deployed: per client address across
e-mails, per (address, e-mail), counted in the database so that it holds across server processes,
and X-Forwarded-For believed only from PAL_TRUSTED_PROXIES."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from server import models
from tests.conftest import BACKENDS, LiveServer, _drop_pg_database, fresh_database_url, start_server, stop_server
from tests.support import PASSWORD, Actor, make_user


@dataclass
class Servers:
    url: str
    first: LiveServer    # pal serve, defaults: nobody's forwarded headers are believed
    second: LiveServer   # another process on the same database
    proxied: LiveServer  # PAL_TRUSTED_PROXIES=127.0.0.1: the test plays the proxy


@pytest.fixture(scope="module", params=BACKENDS)
def servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            pg_ready: bool) -> Iterator[Servers]:
    """Servers on a database of their own: their failed sign-ins from 127.0.0.1 must not throttle the
    rest of the suite, which signs in from that address too."""
    if request.param == "postgres" and not pg_ready:
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432: PostgreSQL half skipped")
    from server.migrate import upgrade

    tmp = tmp_path_factory.mktemp("throttle")
    url, pg_name = fresh_database_url(request.param, tmp)
    upgrade(url)
    limits = {"PAL_LOGIN_ATTEMPTS_PER_MINUTE": "10", "PAL_LOGIN_ATTEMPTS_PER_IP_PER_MINUTE": "30"}  # the defaults
    started = [start_server(url, tmp / f"server-{i}.log", pal_serve=True, env={**limits, **env})
               for i, env in enumerate(({}, {}, {"PAL_TRUSTED_PROXIES": "127.0.0.1"}))]
    yield Servers(url, *started)
    for server in started:
        stop_server(server)
    if pg_name:
        _drop_pg_database(pg_name)


@pytest.fixture
def tdb(servers: Servers) -> Iterator[Session]:
    """A session on the servers' database, with no failure left from the previous test."""
    engine = sa.create_engine(servers.url)
    with sessionmaker(bind=engine, expire_on_commit=False)() as session:
        session.execute(sa.delete(models.LoginFailure))
        session.commit()
        yield session
    engine.dispose()


def _login(server: LiveServer, email: str, password: str, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    with server.client() as client:  # a fresh client: no cookie carries over between tries
        return client.post("/api/v1/auth/login", json={"email": email, "password": password},
                           headers=headers).status_code


def _user(db: Session) -> Actor:
    return make_user(db, "annotator")


def test_login_forged_forwarded_for_does_not_bypass_the_limit(servers: Servers, tdb: Session) -> None:
    user = _user(tdb)
    assert [_login(servers.first, user.email, "wrong password") for _ in range(10)] == [401] * 10
    # Before: uvicorn believed X-Forwarded-For from 127.0.0.1, so each forged address was a new client.
    forged = [_login(servers.first, user.email, PASSWORD, forwarded_for=f"203.0.113.{i}") for i in range(1, 4)]
    assert forged == [429] * 3


def test_login_throttled_per_address_across_emails(servers: Servers, tdb: Session) -> None:
    victims = [_user(tdb) for _ in range(15)]
    codes = [_login(servers.first, v.email, "wrong password") for v in victims for _ in range(2)]
    assert codes == [401] * 30  # 15 e-mails, 2 tries each: no single pair near its limit of 10
    fresh = _user(tdb)
    assert _login(servers.first, fresh.email, PASSWORD) == 429  # the address has used up its 30


def test_login_throttle_holds_across_server_processes(servers: Servers, tdb: Session) -> None:
    user = _user(tdb)
    first = [_login(servers.first, user.email, "wrong password") for _ in range(5)]
    second = [_login(servers.second, user.email, "wrong password") for _ in range(5)]
    assert first + second == [401] * 10
    # Per process each saw 5; together 10, the limit.
    assert _login(servers.first, user.email, PASSWORD) == 429
    assert _login(servers.second, user.email, PASSWORD) == 429


def test_login_forwarded_for_believed_from_a_trusted_proxy(servers: Servers, tdb: Session) -> None:
    user = _user(tdb)
    sprayer, neighbour = "198.51.100.1", "198.51.100.2"
    assert [_login(servers.proxied, user.email, "wrong password", sprayer) for _ in range(10)] == [401] * 10
    assert _login(servers.proxied, user.email, PASSWORD, sprayer) == 429
    # Another client behind the same proxy is a different address, not throttled.
    assert _login(servers.proxied, user.email, PASSWORD, neighbour) == 200
    # A spoofer in front of the proxy: the proxy appends the peer it saw; the rightmost untrusted
    # address counts, whatever the client put first.
    assert _login(servers.proxied, user.email, PASSWORD, f"10.9.9.9, {sprayer}") == 429


def test_login_success_clears_only_its_own_pair(servers: Servers, tdb: Session) -> None:
    user, other = _user(tdb), _user(tdb)
    assert [_login(servers.first, other.email, "wrong password") for _ in range(9)] == [401] * 9
    assert _login(servers.first, other.email, PASSWORD) == 200  # its own failures are forgotten
    assert [_login(servers.first, other.email, "wrong password") for _ in range(9)] == [401] * 9
    rows = tdb.scalar(sa.select(sa.func.count()).select_from(models.LoginFailure)
                      .where(models.LoginFailure.email == other.email.lower()))
    assert rows == 9
    assert _login(servers.first, user.email, PASSWORD) == 200


def test_trusted_proxies_setting_refuses_a_typo() -> None:
    from pydantic import ValidationError

    from server.config import Settings

    with pytest.raises(ValidationError, match="not an IP address"):
        Settings(trusted_proxies="10.0.0.1, proxy.local")
    assert Settings(trusted_proxies="10.0.0.1, 172.16.0.0/12").trusted_proxy_list == ["10.0.0.1", "172.16.0.0/12"]


