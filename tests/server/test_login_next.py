"""``?next=`` after sign-in: only a path on this server (the validator, and the login page over HTTP)."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from server.routers.pages import safe_next
from tests.conftest import LiveServer

HOSTILE = ["/\t/evil.example/x", "/\n/evil.example/x", "/\r/evil.example/x", "\t//evil.example", "//evil.example",
           "/\\evil.example", "/\t\\evil.example", "\\/evil.example", "https://evil.example/x", "javascript:alert(1)",
           "evil.example/x", " /x", "/\x00x", ""]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_next_values_fall_back(value: str) -> None:
    assert safe_next(value) is None


@pytest.mark.parametrize("value", ["/annotate", "/annotate/3?x=1#top", "/admin/projects/2", "/", "/a//b"])
def test_same_site_paths_are_kept(value: str) -> None:
    assert safe_next(value) == value


def _next_on_page(resp: httpx.Response) -> str:
    match = re.search(r'id="login"[^>]*data-next="([^"]*)"', resp.text)
    assert match, resp.text[:2000]
    return html.unescape(match.group(1))


@pytest.mark.parametrize("query", ["%2F%09%2Fevil.example%2Fx", "%2F%0A%2Fevil.example%2Fx",
                                   "%2F%0D%2Fevil.example%2Fx", "%2F%5Cevil.example", "%2F%2Fevil.example"])
def test_login_page_drops_a_hostile_next(live_server: LiveServer, query: str) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        resp = client.get(f"/login?next={query}")
    assert resp.status_code == 200
    assert _next_on_page(resp) == ""


def test_login_page_keeps_a_same_site_next(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        resp = client.get("/login?next=%2Fannotate%2F3")
    assert _next_on_page(resp) == "/annotate/3"
