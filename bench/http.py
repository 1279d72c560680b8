"""A lean HTTP/1.1 keep-alive client on asyncio streams, for the load generator.

Why not httpx: on this 2-core machine httpx's AsyncClient spent 2-4 ms of client CPU per request
(measured with ``bench/load.py --client httpx``), so at a few hundred requests per second the
generator measured itself, not the server. This client does only what the benchmark needs (JSON
bodies, Content-Length responses as uvicorn sends them, a pool of keep-alive connections) at a
small fraction of that cost. Setup calls and the poller keep using httpx."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

IDLE_S = 20.0  # below uvicorn's keep-alive timeout (30 s as bench.harness starts it)


class HTTPError(Exception):
    """A connection failed, was reset, or sent something this client cannot read."""


class Response:
    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _Conn:
    __slots__ = ("reader", "writer", "used")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.used = time.monotonic()

    def close(self) -> None:
        self.writer.close()


class FastClient:
    def __init__(self, base_url: str, *, max_connections: int = 256, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self._idle: deque[_Conn] = deque()
        self._slots = asyncio.Semaphore(max_connections)
        self._host_header = f"{self.host}:{self.port}".encode()

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(json_body, separators=(",", ":")).encode() if json_body is not None else b""
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self._host_header,
                b"Content-Length: " + str(len(body)).encode()]
        if json_body is not None:
            head.append(b"Content-Type: application/json")
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}".encode())
        payload = b"\r\n".join(head) + b"\r\n\r\n" + body
        async with self._slots:
            # A kept-alive connection the server may already have closed (uvicorn drops idle ones
            # after its keep-alive timeout) is not reused; one that fails before any byte of the
            # answer came back is retried once on a fresh connection, as browsers do: the server
            # never read that request.
            while self._idle and time.monotonic() - self._idle[0].used > IDLE_S:
                self._idle.popleft().close()
            for attempt in range(2):
                conn = self._idle.pop() if self._idle else None
                reused = conn is not None
                try:
                    if conn is None:
                        conn = _Conn(*await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                             self.timeout))
                    resp = await asyncio.wait_for(self._roundtrip(conn, payload), self.timeout)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    if conn is not None:
                        conn.close()
                    if reused and attempt == 0 and not getattr(exc, "partial", b""):
                        continue
                    raise HTTPError(f"{type(exc).__name__}: {exc}") from exc
                except (OSError, asyncio.TimeoutError, ValueError) as exc:
                    if conn is not None:
                        conn.close()
                    raise HTTPError(f"{type(exc).__name__}: {exc}") from exc
                if resp.headers.get("connection", "").lower() == "close":
                    conn.close()
                else:
                    conn.used = time.monotonic()
                    self._idle.append(conn)
                return resp
            raise AssertionError("unreachable")

    async def _roundtrip(self, conn: _Conn, payload: bytes) -> Response:
        conn.writer.write(payload)
        head = await conn.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        if "content-length" not in headers:
            raise ValueError(f"response without Content-Length ({headers.get('transfer-encoding', '?')})")
        content = await conn.reader.readexactly(int(headers["content-length"]))
        return Response(status, headers, content)

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()


class HttpxClient:
    """The same interface over httpx.AsyncClient (``--client httpx``, to compare the clients' cost)."""

    def __init__(self, base_url: str, *, max_connections: int = 256, timeout: float = 30.0) -> None:
        import httpx

        self._httpx = httpx
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      headers: dict[str, str] | None = None) -> Response:
        try:
            resp = await self._client.request(method, path, json=json_body, headers=headers)
        except self._httpx.HTTPError as exc:
            raise HTTPError(f"{type(exc).__name__}: {exc}") from exc
        return Response(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content)

    async def aclose(self) -> None:
        await self._client.aclose()
