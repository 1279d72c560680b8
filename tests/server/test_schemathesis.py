"""Schemathesis against the OpenAPI description: every operation, with an admin, an annotator and a
trainer token and with no credentials, a bounded number of generated requests each (positive and
negative data). No response may be a 5xx, and every documented response must match its schema.

``PAL_SCHEMATHESIS_EXAMPLES`` raises the number of requests per operation and mode (default 6, which
keeps the whole file at about a minute and a half on two cores)."""

from __future__ import annotations

import contextlib
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from sqlalchemy.orm import Session

from tests.conftest import LiveServer
from tests.support import make_project, make_user

EXAMPLES = int(os.environ.get("PAL_SCHEMATHESIS_EXAMPLES", "6"))
# Revoking tokens at random would revoke the very tokens this test sends (admin token ids are small
# integers a generator finds quickly); revocation has its own tests in test_security.py.
SKIP = {("DELETE", "/api/v1/tokens/{token_id}")}


class Fuzzer:
    def __init__(self, base_url: str, headers: dict[str, str], label: str) -> None:
        self.base_url, self.headers, self.label = base_url, headers, label
        self.calls = 0
        self.failures: list[str] = []

    def fuzz(self, operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
        name = f"{operation.method.upper()} {operation.path} as {self.label} ({mode.value})"

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            self.calls += 1
            status = "no response"
            try:
                response = case.call(base_url=self.base_url, headers=self.headers, timeout=30)
                status = str(response.status_code)
                case.validate_response(response, checks=[not_a_server_error, response_schema_conformance],
                                       headers=self.headers)
            except (Exception, FailureGroup) as exc:  # collected: every failure is reported at the end
                self.failures.append(f"{name}: {status} {str(exc)[:600]}")

        with contextlib.suppress(Unsatisfiable):  # nothing to make invalid (no parameters, no body)
            run()


@pytest.mark.parametrize("role", ["admin", "annotator", "trainer", "anonymous"])
def test_api_never_5xx_and_matches_its_schema(live_server: LiveServer, db: Session, role: str) -> None:
    actor = make_user(db, role) if role != "anonymous" else None
    make_project(db, n_items=12, members=[actor] if actor is not None and role == "annotator" else [])
    fuzzer = Fuzzer(live_server.url, {"Authorization": f"Bearer {actor.token}"} if actor else {}, role)
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in SKIP:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzzer.fuzz(operation, mode)
    assert fuzzer.calls > 100
    assert fuzzer.failures == [], "\n".join(sorted(set(fuzzer.failures))[:40])
