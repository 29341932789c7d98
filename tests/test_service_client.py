"""The CLI and a running `simlookup serve`: the endpoint record, search / verify through the service, and faults
(a client that disconnects, a burst of 200 requests, requests over the limits) against a real server process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retrieval.filters import Filter
from retrieval.settings import Settings
from simlookup.filter_args import parse_filter_args
from simlookup.service import (
    ServiceClient,
    ServiceError,
    endpoint_file,
    find_service,
    remove_endpoint,
    write_endpoint,
)

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_endpoint_record_is_ignored_when_stale(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    path = write_endpoint(tmp_path, "c", url)
    assert path == endpoint_file(tmp_path, "c") and json.loads(path.read_text())["pid"] == os.getpid()
    assert find_service(tmp_path, "c") is None  # our pid is alive, but nothing listens there
    assert path.exists()
    rec = json.loads(path.read_text()) | {"pid": dead_pid()}
    path.write_text(json.dumps(rec))
    assert find_service(tmp_path, "c") is None and not path.exists()  # the process is gone: record removed
    path.write_text("{not json")
    assert find_service(tmp_path, "c") is None
    assert find_service(tmp_path, "other") is None


def test_remove_endpoint_leaves_another_services_record(tmp_path: Path) -> None:
    path = write_endpoint(tmp_path, "c", "http://127.0.0.1:1")
    path.write_text(json.dumps({"name": "c", "url": "http://127.0.0.1:1", "pid": dead_pid()}))
    remove_endpoint(tmp_path, "c")
    assert path.exists()
    write_endpoint(tmp_path, "c", "http://127.0.0.1:1")
    remove_endpoint(tmp_path, "c")
    assert not path.exists()


def test_filter_goes_to_the_service_unchanged() -> None:
    args = ["genre=main-news", "split=dev,test", "year>=2012", "score<3", "flag!=true", "note=null",
            '{"$or": [{"a.b": 1}, {"$not": {"tags": {"$in": ["x", "y"]}}}]}']
    flt = parse_filter_args(args)
    spec = json.loads(json.dumps(flt.to_dict()))  # what the CLI sends over HTTP
    assert Filter.from_dict(spec) == flt
    payloads = [{"genre": "main-news", "split": "dev", "year": 2014, "score": 1, "flag": False, "a": {"b": 1}},
                {"genre": "main-news", "split": "test", "year": 2014, "score": 1, "tags": ["z"]},
                {"genre": "main-news", "split": "test", "year": 2014, "score": 1, "tags": ["x"]},
                {"genre": "main-news", "split": "dev", "year": 2010, "score": 1, "a": {"b": 1}}]
    assert [Filter.from_dict(spec).matches(p) for p in payloads] == [flt.matches(p) for p in payloads]
    assert [flt.matches(p) for p in payloads] == [True, True, False, False]


def test_client_errors_are_clear() -> None:
    with pytest.raises(ServiceError, match="cannot reach the service"):
        ServiceClient(f"http://127.0.0.1:{closed_port()}", timeout_s=2).get("/healthz")
    with pytest.raises(Exception, match="not an http"):
        ServiceClient("ftp://example")


# ---- a real `simlookup serve` on loopback ----

QUERY = "A man is playing a flute."


def cli(data_dir: Path, *args: str, code: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMLOOKUP_")}
    env |= {"SIMLOOKUP_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "simlookup", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory, minilm) -> tuple[Settings, dict[str, Any]]:  # type: ignore[no-untyped-def]
    from ingest.job import IngestOptions, run_ingest
    from retrieval.retriever import Retriever

    s = Settings(data_dir=tmp_path_factory.mktemp("svc") / "data")
    run_ingest(
        s, IngestOptions("stsb", "s", indexes=["flat", "hnsw"], limit=200, progress=False), encoders={"text": minilm}
    )
    expected: dict[str, Any] = {}
    with Retriever(s, "s", encoders={"text": minilm}) as r:  # the session's loaded model
        for index in ("flat", "qdrant"):
            expected[index] = r.search_text(QUERY, index=index, k=5).to_dict()
    return s, expected


@pytest.fixture(scope="module")
def service(collection: tuple[Settings, dict[str, Any]]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    s, _ = collection
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMLOOKUP_")}
    env |= {"SIMLOOKUP_DATA_DIR": str(s.data_dir), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "simlookup", "serve", "--name", "s", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    path = endpoint_file(s.data_dir, "s")
    deadline = time.monotonic() + 240
    url = None
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and json.loads(path.read_text() or "{}").get("pid") == proc.pid:
            url = json.loads(path.read_text())["url"]
            break
        time.sleep(0.2)
    if url is None:
        proc.kill()
        pytest.fail(f"simlookup serve did not record its address: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


@pytest.mark.slow
def test_search_and_verify_go_through_the_running_service(
    collection: tuple[Settings, dict[str, Any]], service: tuple[subprocess.Popen[bytes], str]
) -> None:
    s, expected = collection
    _, url = service
    assert find_service(s.data_dir, "s") == url
    for index in ("flat", "qdrant"):  # qdrant: in-process, Qdrant Edge's lock would refuse a second open
        r = cli(s.data_dir, "search", QUERY, "--name", "s", "--index", index, "-k", "5", "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert [h["id"] for h in doc["hits"]] == [h["id"] for h in expected[index]["hits"]]
        assert [h["score"] for h in doc["hits"]] == pytest.approx(
            [h["score"] for h in expected[index]["hits"]], abs=1e-5
        )
    r = cli(s.data_dir, "search", QUERY, "--name", "s", "--filter", "genre=main-captions", "-k", "3")
    assert r.returncode == 0 and f"via {url}" in r.stdout, r.stderr
    r = cli(s.data_dir, "verify", "--name", "s")
    assert r.returncode == 0 and r.stdout.startswith("OK: ") and f"via {url}" in r.stdout, r.stderr
    r = cli(s.data_dir, "verify", "--name", "s", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and set(doc["counts"]["text"]) == {"flat", "hnsw", "qdrant"}
    assert all(n == 200 for n in doc["counts"]["text"].values())


@pytest.mark.slow
def test_vector_search_and_verify_through_the_service_import_no_torch(
    collection: tuple[Settings, dict[str, Any]], service: tuple[subprocess.Popen[bytes], str], minilm: Any
) -> None:
    s, expected = collection
    vec = json.dumps(minilm.encode_text([QUERY])[0].tolist())
    code = (
        "import sys, json; from simlookup.cli import main; rc = main(sys.argv[1:]); "
        "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules, 'st': 'sentence_transformers' in sys.modules}))"
    )
    r = cli(s.data_dir, "search", "--name", "s", "--vector", vec, "-k", "5", "--json", code=code)
    out = r.stdout.strip().splitlines()
    assert json.loads(out[-1]) == {"rc": 0, "torch": False, "st": False}, r.stderr
    doc = json.loads("\n".join(out[:-1]))
    assert [h["id"] for h in doc["hits"]] == [h["id"] for h in expected["flat"]["hits"]]
    r = cli(s.data_dir, "verify", "--name", "s", code=code.replace("'st':", "'numpy': 'numpy' in sys.modules, 'st':"))
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"rc": 0, "torch": False, "numpy": False, "st": False}, (
        r.stderr
    )


def raw_http(port: int, data: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        if not read:
            return b""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.slow
def test_faults_never_take_the_service_down(service: tuple[subprocess.Popen[bytes], str]) -> None:
    import httpx

    proc, url = service
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({"text": QUERY, "k": 3}).encode()
    head = f"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    # a client that goes away: half a body, then a full request whose answer it never reads
    raw_http(port, head.encode() + b"\r\n" + body[:10], read=False)
    for _ in range(5):
        raw_http(port, head.encode() + b"Connection: close\r\n\r\n" + body, read=False)
    # over the limits: a declared body of 50 MB, a chunked body over the cap, a text over max_text_chars, k over max_k
    big = raw_http(
        port, b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{"
    )
    assert big.startswith(b"HTTP/1.1 413") and b"above the limit" in big

    def chunks() -> Iterator[bytes]:
        for _ in range(12):
            yield b" " * (1 << 20)

    with httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/search", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        r = c.post("/search", json={"text": "x" * 5000})
        assert r.status_code == 413 and "max_text_chars" in r.json()["detail"]
        r = c.post("/search", json={"text": "x", "k": 10**9})
        assert r.status_code == 422 and "SIMLOOKUP_API__MAX_K" in r.json()["detail"]

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
            return await asyncio.gather(
                *(c.post("/search", json={"text": f"burst query number {i}", "k": 3}) for i in range(200))
            )

    responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and codes.count(200) > 0, codes
    assert all("hits" in r.json() or "busy" in r.json()["detail"] for r in responses)
    assert proc.poll() is None
    with httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/healthz").status_code == 200
        r = c.post("/search", json={"text": QUERY, "k": 3})
        assert r.status_code == 200 and len(r.json()["hits"]) == 3
        metrics = c.get("/metrics").text
    sizes = next(x for x in metrics.splitlines() if x.startswith('simlookup_batch_size_sum{queue="text"}'))
    count = next(x for x in metrics.splitlines() if x.startswith('simlookup_batch_size_count{queue="text"}'))
    assert float(sizes.rsplit(" ", 1)[1]) > float(count.rsplit(" ", 1)[1])  # the burst was batched


@pytest.mark.slow
def test_stopped_service_removes_its_record_and_the_cli_works_alone(
    collection: tuple[Settings, dict[str, Any]], service: tuple[subprocess.Popen[bytes], str]
) -> None:
    s, expected = collection
    proc, _ = service
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    assert not endpoint_file(s.data_dir, "s").exists()
    write_endpoint(s.data_dir, "s", f"http://127.0.0.1:{closed_port()}")  # a stale record: nothing listens
    r = cli(s.data_dir, "search", QUERY, "--name", "s", "--index", "qdrant", "-k", "5", "--json")
    assert r.returncode == 0, r.stderr
    assert [h["id"] for h in json.loads(r.stdout)["hits"]] == [h["id"] for h in expected["qdrant"]["hits"]]


def test_cli_refuses_bad_vectors_and_ports(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from simlookup.cli import main

    d = ["--data-dir", str(tmp_path)]
    assert main([*d, "search", "--name", "c", "--vector", "[1, 2"]) == 2
    assert "--vector must be a JSON list" in capsys.readouterr().err
    assert main([*d, "search", "--name", "c", "--vector", '["a"]']) == 2
    assert "list of finite numbers" in capsys.readouterr().err
    assert main([*d, "search", "--name", "c", "--vector", "[1.0, NaN]"]) == 2
    assert "list of finite numbers" in capsys.readouterr().err
    assert main([*d, "search", "text", "--name", "c", "--vector", "[1]"]) == 2
    assert "exactly one of" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([*d, "serve", "--name", "c", "--port", "70000"])
    assert exit_.value.code == 2 and "70000 is out of range: use 0 to 65535" in capsys.readouterr().err
    assert main([*d, "verify", "--name", "c", "--url", f"http://127.0.0.1:{closed_port()}"]) == 2
    assert "cannot reach the service" in capsys.readouterr().err
