"""The load generator (`simlookup loadtest`'s client side): every text sent once, errors counted, headers sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from benchmarks.load import drive


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real service answers
    seen: list[dict[str, Any]] = []
    keys: list[str | None] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        type(self).keys.append(self.headers.get("X-API-Key"))
        status = 500 if body["text"].startswith("fail") else 200
        out = b'{"hits": []}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.seen, _Handler.keys = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_drive_sends_every_text_once_and_counts_errors(server: str) -> None:
    texts = [f"ok {i}" for i in range(40)] + [f"fail {i}" for i in range(7)]
    res = drive(server, texts, concurrency=5, index="hnsw", headers={"X-API-Key": "k1"})
    assert res["requests"] == 47 and res["errors"] == 7 and res["concurrency"] == 5
    assert sorted(b["text"] for b in _Handler.seen) == sorted(texts)
    assert all(b["k"] == 10 and b["index"] == "hnsw" for b in _Handler.seen)
    assert set(_Handler.keys) == {"k1"}
    assert res["throughput_rps"] > 0 and res["p50_ms"] <= res["p95_ms"]


def test_drive_counts_an_unreachable_service_as_errors() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    res = drive(f"http://127.0.0.1:{port}", ["a", "b", "c"], concurrency=2, index="flat", headers={})
    assert res["requests"] == 3 and res["errors"] == 3
