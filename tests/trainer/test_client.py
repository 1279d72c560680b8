from __future__ import annotations

import logging

import httpx
import numpy as np
import pytest

from pal.wire import START_CURSOR
from tests.trainer.trainer_fakes import TOKEN, FakeServer, answer, retract
from trainer.client import ApiClient, ApiError, RetryPolicy


def test_client_sends_bearer_token(fake_server: FakeServer) -> None:
    fake_server.client().get_project(1)
    assert fake_server.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"


def test_client_wrong_token_raises_api_error_with_server_code(fake_server: FakeServer) -> None:
    client = ApiClient("http://fake", "nope", transport=httpx.MockTransport(fake_server.handler))
    with pytest.raises(ApiError) as err:
        client.get_project(1)
    assert (err.value.status, err.value.code) == (401, "unauthorized")


def test_client_server_errors_are_retried_with_exponential_backoff(fake_server: FakeServer) -> None:
    waits: list[float] = []
    fake_server.fail_next = [503, 502, 500]
    project = fake_server.client(sleep=waits.append).get_project(1)
    assert project["id"] == 1
    assert waits == [0.5, 1.0, 2.0]


def test_client_backoff_is_capped(fake_server: FakeServer) -> None:
    assert RetryPolicy(base_delay=1.0, max_delay=5.0).delay(10) == 5.0


def test_client_connection_error_logs_and_retries(fake_server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    fake_server.fail_next = [httpx.ConnectError("refused")]
    with caplog.at_level(logging.WARNING, logger="trainer.client"):
        fake_server.client().get_project(1)
    assert "server unavailable" in caplog.text and "ConnectError" in caplog.text


def test_client_gives_up_after_max_attempts(fake_server: FakeServer) -> None:
    fake_server.fail_next = [httpx.ConnectError("refused")] * 3
    with pytest.raises(ApiError, match="failed 3 times"):
        fake_server.client(retry=RetryPolicy(max_attempts=3)).get_project(1)


def test_client_not_found_is_not_retried(fake_server: FakeServer) -> None:
    with pytest.raises(ApiError) as err:
        fake_server.client().get_project(2)
    assert err.value.code == "not_found" and len(fake_server.requests) == 1


def test_client_get_pixels_decodes_page_and_next_after(fake_server: FakeServer) -> None:
    page = fake_server.client().get_pixels(1, after=None, limit=10, size=None)
    assert page.ids.tolist() == list(range(100, 110))
    assert page.images.shape == (10, 16, 16, 1) and page.images.dtype == np.uint8
    assert page.next_after == 109


def test_client_get_pixels_last_page_has_no_next_after(fake_server: FakeServer) -> None:
    page = fake_server.client().get_pixels(1, after=140, limit=100, size=None)
    assert page.ids.tolist() == list(range(141, 148)) and page.next_after is None


def test_client_get_edges_parses_answers_and_retractions(fake_server: FakeServer) -> None:
    fake_server.edges = [answer(1, 100, 101, 1, 0.5), retract(2, 1)]
    page = fake_server.client().get_edges(1, START_CURSOR, 10)
    assert (page.edges[0].src, page.edges[0].dst, page.edges[0].weight) == (100, 101, 0.5)
    assert (page.edges[1].kind, page.edges[1].retracts_id) == ("retract", 1)
    assert page.next_cursor == "0:2" and not page.has_more


def test_client_upload_sends_meta_ids_and_vectors(fake_server: FakeServer) -> None:
    vectors = np.arange(6, dtype=np.float64).reshape(3, 2)
    fake_server.client().upload_embeddings(
        1,
        item_ids=np.array([5, 6, 7]),
        vectors=vectors,
        step=9,
        edges_seen=4,
        cursor="0:4",
        metrics={"loss": 1.5},
    )
    got = fake_server.uploads[0]
    assert got["meta"] == {"step": 9, "edges_seen": 4, "cursor": "0:4", "metrics": {"loss": 1.5}}
    assert got["item_ids"].dtype == np.int64 and got["item_ids"].tolist() == [5, 6, 7]
    assert got["vectors"].dtype == np.float32 and np.array_equal(got["vectors"], vectors)


def test_client_upload_mismatched_rows_raises() -> None:
    client = ApiClient("http://fake", TOKEN)
    with pytest.raises(ValueError, match=r"\(2,\).*\(3, 4\)"):
        client.upload_embeddings(
            1, item_ids=np.zeros(2), vectors=np.zeros((3, 4)), step=0, edges_seen=0, cursor="0:0", metrics={}
        )
