"""The Qdrant Edge memory tiers (issue 25 item 2): no quantization, scalar (int8) and binary quantization, each
also with the original vectors and HNSW graph on disk, over one set of synthetic clustered vectors.

Each tier is built in its own process (upsert, ``build()``, then auto-tune to recall@10 0.95 by id overlap:
``retrieval.tuning``), then opened read-only in a fresh process that first searches a small twin collection of the
same tier (code and libraries loaded on first use join the baseline) and then runs single-query searches at the
tuned setting: build and tuning seconds, disk bytes, resident memory beyond the baseline after the searches
(VmRSS, split into anonymous and file-backed), recall@10 by id overlap against exact truth on fresh queries, p50.
A reading, not a limit (``benchmarks.memlimit`` measures limits): mapped pages the kernel could drop count while
they stay mapped. The load average is sampled at each step; on a shared machine the numbers are under load.

    python -m benchmarks.qdrant_tiers --n 100000 --dim 384 --searches 300 --out benchmarks/results/qdrant-tiers
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WARM = 2000  # points of the twin collection each probe searches before it measures
TIERS: dict[str, dict[str, Any]] = {
    "none": {},
    "scalar": {"quantization": "scalar"},
    "binary": {"quantization": "binary"},
    "scalar+on_disk": {"quantization": "scalar", "on_disk": True},
    "binary+on_disk": {"quantization": "binary", "on_disk": True},
    "none+on_disk": {"on_disk": True},
}


def settings(root: Path, tier: str) -> Any:
    from retrieval.settings import QdrantSettings, Settings

    q = QdrantSettings(mode="edge", search_threads=1, indexing_threads=1, **TIERS[tier])
    return Settings(data_dir=root, qdrant=q)


def status_kb() -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of this process, in KiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0])
    return out


def mapped_rss(prefix: str) -> dict[str, int]:
    """Resident bytes of this process's mappings of files under ``prefix``, by the file's part of the shard
    (original vectors, quantized vectors, HNSW graph, payloads, write-ahead log, other)."""

    def part(path: str) -> str:
        name = path.rsplit("/", 1)[-1]
        if "/wal/" in path:
            return "wal"
        if name.startswith("quantized"):
            return "quantized"
        if "/vector_index/" in path:
            return "graph"
        if "/vector_storage/" in path:
            return "vectors"
        if "/payload" in path:
            return "payload"
        return "other"

    out: dict[str, int] = {}
    current: str | None = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            current = part(head[5]) if len(head) >= 6 and head[5].startswith(prefix) else None
        elif current is not None and line.startswith("Rss:"):
            out[current] = out.get(current, 0) + int(head[1]) * 1024
    return out


def load() -> float:
    return round(os.getloadavg()[0], 2)


def data(root: Path, n: int, dim: int, searches: int) -> None:
    """The vectors, fresh queries and their exact top 10 (cosine), saved once under ``root``."""
    import numpy as np

    from benchmarks.datasets import clustered

    ds = clustered(n=n, d=dim, nq=searches, seed=0)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "xb.npy", ds.xb)
    np.save(root / "queries.npy", ds.xq)
    truth = np.concatenate([np.argsort(-(ds.xq[i : i + 50] @ ds.xb.T), axis=1)[:, :10] for i in range(0, searches, 50)])
    np.save(root / "truth.npy", truth)


def build(root: Path, tier: str) -> dict[str, Any]:
    """The collection ``c`` (and its twin ``warm``) of one tier under ``root / tier``, tuned; what it cost."""
    import numpy as np

    from retrieval.stores import open_store
    from retrieval.stores.qdrant_edge_store import dir_bytes
    from retrieval.tuning import tune

    xb = np.load(root / "xb.npy", mmap_mode="r")
    here = root / tier
    s = settings(here, tier)
    row: dict[str, Any] = {"tier": tier, "settings": TIERS[tier], "load_start": load()}
    with open_store(s, "warm", "qdrant", dim=xb.shape[1]) as warm:
        warm.upsert([f"w{i}" for i in range(WARM)], np.asarray(xb[:WARM]))
        warm.build()
    st = open_store(s, "c", "qdrant", dim=xb.shape[1])
    t0 = time.perf_counter()
    for i in range(0, len(xb), 10_000):
        part = np.asarray(xb[i : i + 10_000])
        st.upsert([f"p{j}" for j in range(i, i + len(part))], part)
    t1 = time.perf_counter()
    st.build()
    t2 = time.perf_counter()
    row["load_built"] = load()
    op = tune(st)
    assert op is not None
    row.update(
        n=st.count(),
        dim=int(xb.shape[1]),
        upsert_s=round(t1 - t0, 1),
        build_s=round(t2 - t1, 1),
        tune_s=op.seconds,
        tuned=op.params,
        tuned_sample_recall=op.recall,
        tuned_reached=op.reached,
        tier_recorded=st.info()["tier"],
    )
    st.close()
    row["disk_bytes"] = dir_bytes(here / "qdrant-edge" / "c")
    row["disk_bytes_per_vector"] = round(row["disk_bytes"] / row["n"], 1)
    row["load_end"] = load()
    return row


def probe(root: Path, tier: str, params: dict[str, Any]) -> dict[str, Any]:
    """The tier's collection opened read-only in this (fresh) process and searched once per query."""
    import numpy as np

    from retrieval.stores import SearchParams, open_store

    queries = np.load(root / "queries.npy")
    s = settings(root / tier, tier)
    sp = SearchParams(**params)
    with open_store(s, "warm", "qdrant", create=False, read_only=True) as warm:
        for q in queries[:20]:
            warm.search(q, 10, params=sp)
    base = status_kb()
    loads = [load()]
    st = open_store(s, "c", "qdrant", create=False, read_only=True)
    opened = status_kb()
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append({int(h.id[1:]) for h in st.search(q, 10, params=sp, with_payload=False)[0]})
        times.append(time.perf_counter() - t)
    after = status_kb()
    mapped = mapped_rss(str(root / tier / "qdrant-edge" / "c"))
    loads.append(load())
    truth = np.load(root / "truth.npy")
    n = st.count()
    row = {
        "id_recall@10": round(
            float(np.mean([len(f & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)])), 4
        ),
        "p50_ms": round(float(np.median(times)) * 1e3, 3),
        "p95_ms": round(float(np.percentile(times, 95)) * 1e3, 3),
        "searches": len(queries),
        "rss_bytes_per_vector": round((after["VmRSS"] - base["VmRSS"]) * 1024 / n, 1),
        "anon_bytes_per_vector": round((after["RssAnon"] - base["RssAnon"]) * 1024 / n, 1),
        "file_bytes_per_vector": round((after["RssFile"] - base["RssFile"]) * 1024 / n, 1),
        "open_rss_bytes_per_vector": round((opened["VmRSS"] - base["VmRSS"]) * 1024 / n, 1),
        "mapped_bytes_per_vector": {k: round(v / n, 1) for k, v in sorted(mapped.items())},
        "probe_load": loads,
    }
    st.close()
    return row


def _child(*args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.qdrant_tiers", *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--searches", type=int, default=300)
    p.add_argument("--tiers", nargs="*", default=list(TIERS), choices=list(TIERS))
    p.add_argument("--out", type=Path, default=None, help="folder for tiers.json (default: print only)")
    p.add_argument("--build", nargs=2, metavar=("ROOT", "TIER"), help=argparse.SUPPRESS)
    p.add_argument("--probe", nargs=3, metavar=("ROOT", "TIER", "PARAMS"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.build:
        print(json.dumps(build(Path(a.build[0]), a.build[1])))
        return 0
    if a.probe:
        print(json.dumps(probe(Path(a.probe[0]), a.probe[1], json.loads(a.probe[2]))))
        return 0
    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="qdrant-tiers-") as tmp:
        root = Path(tmp)
        data(root, a.n, a.dim, a.searches)
        for tier in a.tiers:
            row = _child("--build", str(root), tier)
            row.update(_child("--probe", str(root), tier, json.dumps(row["tuned"])))
            rows.append(row)
            print(json.dumps(row), flush=True)
    doc = {
        "n": a.n,
        "dim": a.dim,
        "data": "benchmarks.datasets.clustered(seed=0), fresh queries from the same mixture",
        "threads": 1,
        "cpus": os.cpu_count(),
        "seconds": round(time.time() - started, 1),
        "rows": rows,
    }
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "tiers.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
