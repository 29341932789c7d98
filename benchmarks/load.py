"""A bounded load run on loopback: a real `simlookup serve` process, N concurrent clients, a fixed request count."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.metrics import percentiles
from retrieval.errors import SimlookupError
from retrieval.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(settings: Settings, name: str, port: int, timeout_s: float = 120) -> subprocess.Popen[bytes]:
    """Start `simlookup serve` on 127.0.0.1:port and wait until /readyz answers 200."""
    import httpx

    env = {**os.environ, "SIMLOOKUP_DATA_DIR": str(settings.data_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "simlookup", "serve", "--name", name, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SimlookupError(f"simlookup serve exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=60).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SimlookupError(f"simlookup serve did not become ready in {timeout_s:.0f} s")


def run_load(
    settings: Settings,
    name: str,
    requests: int = 400,
    concurrency: int = 8,
    index: str = "hnsw",
    out: Path | None = None,
) -> dict[str, Any]:
    """Send `requests` text searches from `concurrency` clients; throughput and latency percentiles."""
    import httpx

    from ingest.corpora import get_corpus

    texts = get_corpus("stsb").load(limit=max(requests, 50))["text"]
    port = free_port()
    proc = start_server(settings, name, port)
    headers = {"X-API-Key": settings.api.key.get_secret_value()} if settings.api.key else {}
    lat: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        nonlocal errors
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as c:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                r = c.post("/search", json={"text": texts[i % len(texts)], "k": 10, "index": index})
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    errors += r.status_code != 200

    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as c:  # warm-up
            c.post("/search", json={"text": "warm up", "k": 1, "index": index})
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    res = {
        "name": name,
        "index": index,
        "requests": requests,
        "concurrency": concurrency,
        "wall_s": wall,
        "throughput_rps": requests / wall,
        "errors": errors,
        **percentiles(lat),
        "load_average": list(os.getloadavg()),
        "cores": os.cpu_count(),
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "serve_load.json").write_text(json.dumps(res, indent=2) + "\n")
        (out / "serve_load.md").write_text(
            "# `simlookup serve` under load (loopback)\n\n"
            f"{requests} text searches (`POST /search`, k=10, index {index}) on collection `{name}` from "
            f"{concurrency} concurrent clients against one `simlookup serve` process on this machine "
            f"({res['cores']} cores; the clients share them).\n\n"
            "| throughput req/s | p50 ms | p95 ms | p99 ms | errors |\n| ---: | ---: | ---: | ---: | ---: |\n"
            f"| {res['throughput_rps']:.1f} | {res['p50_ms']:.1f} | {res['p95_ms']:.1f} | {res['p99_ms']:.1f} | "
            f"{errors} |\n"
        )
    return res
