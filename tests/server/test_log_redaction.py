"""Invite tokens never reach the access logs (uvicorn's plain one and PAL's JSON one), in the
sign-up page's query string or in the accept route's path."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from server.log_redaction import mask_url
from tests.conftest import start_server, stop_server

SECRET = "s3cr3t-invite-token-value"


def test_mask_url_hides_invite_tokens_in_paths_and_queries() -> None:
    assert mask_url(f"/login?invite={SECRET}&next=/x") == "/login?invite=***&next=/x"
    assert mask_url(f"/api/v1/auth/invites/{SECRET}/accept") == "/api/v1/auth/invites/***/accept"
    assert mask_url("/api/v1/projects/3/items?after=5") == "/api/v1/projects/3/items?after=5"


@pytest.mark.parametrize("log_json", ["false", "true"])
def test_access_logs_carry_no_invite_token(database_url: str, tmp_path: Path, log_json: str) -> None:
    log = tmp_path / "server.log"
    server = start_server(database_url, log, env={"PAL_LOG_JSON": log_json}, log_level="info")
    try:
        with server.client() as client:
            assert client.get(f"/login?invite={SECRET}").status_code == 200
            accept = client.post(f"/api/v1/auth/invites/{SECRET}/accept",
                                 json={"email": "x@test.example", "password": "a long new phrase"})
            assert accept.status_code == 404
        time.sleep(0.5)  # the access lines are written after the responses
    finally:
        stop_server(server)
    text = log.read_text()
    assert "invites/***/accept" in text, text[-2000:]
    if log_json == "false":  # uvicorn's line has the query string; PAL's JSON line has the path only
        assert "invite=***" in text, text[-2000:]
    assert SECRET not in text
