"""Sign-in follows ``?next=`` only to a path on the server itself: a tab or a line break inside
``//`` (which the browser strips) must not carry the user to another host."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from sqlalchemy.orm import Session

from tests.support import PASSWORD, make_user
from tests.webui.conftest import Watched

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("next_param", ["%2F%09%2Fevil.example%2Fx", "%2F%0A%2Fevil.example%2Fx"])
def test_sign_in_with_a_hostile_next_stays_on_the_server(open_context: Callable[..., Watched], web_db: Session,
                                                        next_param: str) -> None:
    annotator = make_user(web_db, "annotator")
    ctx = open_context()
    ctx.context.route("**/*evil.example*/**", lambda route: route.fulfill(body="evil", content_type="text/html"))
    page = ctx.page()
    page.goto(f"/login?next={next_param}")
    page.fill("#email", annotator.email)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url, timeout=10_000)
    landed = urlsplit(page.url)
    assert f"{landed.scheme}://{landed.netloc}" == ctx.origin, page.url
    assert landed.path == "/annotate"
    ctx.requests[:] = [u for u in ctx.requests if "evil.example" not in u]  # reported by the assertion above


def test_sign_in_with_a_same_site_next_goes_there(open_context: Callable[..., Watched], web_db: Session) -> None:
    annotator = make_user(web_db, "annotator")
    ctx = open_context()
    page = ctx.page()
    page.goto("/login?next=%2Fannotate%2F7")
    page.fill("#email", annotator.email)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url, timeout=10_000)
    assert page.url == f"{ctx.origin}/annotate/7"
