"""Resident memory of the FAISS memory tiers after a few hundred searches (issue 25 item 1).

One writer process builds flat, ivfpq, ivf_sq8 and hnsw_sq8 over one collection of synthetic clustered vectors
(``benchmarks.datasets.clustered``, no payloads); then each kind is opened read-only in a fresh process that
runs single-query searches, and reports its resident memory beyond the imports (``/proc/self/status`` VmRSS,
split into anonymous and file-backed), the Rss of its mapping of the vector file (``/proc/self/smaps``) and the
index's own bytes. Each probe first searches a small twin collection, so that code and libraries loaded on first
use are part of the baseline. A reading, not a limit: pages the kernel could reclaim count while they stay mapped.

    python -m benchmarks.tier_rss --n 100000 --dim 384 --searches 300 --out benchmarks/results/tiers
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WARM = 2000  # points of the twin collection each probe searches before it measures

# kind: the query parameters of its searches (ivfpq: re-rank ×10 from the vector file)
KINDS: dict[str, dict[str, Any]] = {
    "flat": {},
    "ivfpq": {"nprobe": 32, "rerank": 10},
    "ivf_sq8": {"nprobe": 32},
    "hnsw_sq8": {"hnsw_ef": 64},
}


def status_kb() -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of this process, in KiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0])
    return out


def mapped_rss(prefix: str) -> int:
    """Resident bytes of this process's mappings of files whose path starts with ``prefix``."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            inside = len(head) >= 6 and head[5].startswith(prefix)
        elif inside and line.startswith("Rss:"):
            total += int(head[1]) * 1024
    return total


def build(root: Path, n: int, dim: int, searches: int) -> float:
    """Every kind of collection ``c`` under ``root``, and the queries in ``queries.npy``; seconds taken."""
    import numpy as np

    from benchmarks.datasets import clustered
    from retrieval.settings import Settings
    from retrieval.stores import open_store

    t0 = time.perf_counter()
    ds = clustered(n=n, d=dim, nq=searches, seed=0)
    root.mkdir(parents=True)
    np.save(root / "queries.npy", ds.xq)
    xb = ds.xb / np.linalg.norm(ds.xb, axis=1, keepdims=True)
    np.save(root / "truth.npy", np.argsort(-(ds.xq @ xb.T), axis=1)[:, :10])  # exact top 10 (cosine)
    s = Settings(data_dir=root)
    for name, size in (("c", n), ("warm", WARM)):  # warm: a small twin, searched first (code and libraries)
        for kind in KINDS:
            st = open_store(s, name, kind, dim=dim)
            if kind == "flat":
                ids = ds.point_ids()[:size]
                for i in range(0, size, 10_000):
                    st.upsert(ids[i : i + 10_000], ds.xb[i : min(i + 10_000, size)])
            st.build()
            st.close()
    return time.perf_counter() - t0


def probe(root: Path, kind: str, searches: int, via_map: bool = False) -> dict[str, Any]:
    """One kind opened read-only and searched ``searches`` times, in this (fresh) process. ``via_map``: re-rank
    gathers its rows through the vector file's memory map, as before issue 25 (for comparison)."""
    import faiss
    import numpy as np

    from retrieval.settings import Settings
    from retrieval.stores import FaissStore, SearchParams, open_store

    faiss.omp_set_num_threads(1)
    if via_map:
        from retrieval.stores.vector_file import VectorFile

        def through_map(vf: VectorFile, rows: np.ndarray) -> np.ndarray:
            return vf.view()[rows]

        VectorFile.read_rows = through_map  # type: ignore[method-assign,assignment]
    queries = np.load(root / "queries.npy")[:searches]
    params = SearchParams(**KINDS[kind])
    with open_store(Settings(data_dir=root), "warm", kind, create=False, read_only=True) as warm:
        for q in queries[:20]:
            warm.search(q, 10, params=params)
    base = status_kb()
    st = open_store(Settings(data_dir=root), "c", kind, create=False, read_only=True)
    opened = status_kb()
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append({int(h.id[1:]) for h in st.search(q, 10, params=params)[0]})
        times.append(time.perf_counter() - t)
    after = status_kb()
    truth = np.load(root / "truth.npy")
    recall = float(np.mean([len(f & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)]))
    n = st.count()
    row = {
        "kind": kind + (" (re-rank through the file map, as before)" if via_map else ""),
        "params": KINDS[kind],
        "n": n,
        "searches": len(queries),
        "id_recall@10": round(recall, 4),
        "p50_ms": round(float(np.median(times)) * 1e3, 3),
        "rss_bytes_per_vector": round((after["VmRSS"] - base["VmRSS"]) * 1024 / n, 1),
        "anon_bytes_per_vector": round((after["RssAnon"] - base["RssAnon"]) * 1024 / n, 1),
        "file_bytes_per_vector": round((after["RssFile"] - base["RssFile"]) * 1024 / n, 1),
        "open_rss_bytes_per_vector": round((opened["VmRSS"] - base["VmRSS"]) * 1024 / n, 1),
        "vector_file_mapped_bytes_per_vector": round(mapped_rss(str(root / "faiss" / "c" / "points")) / n, 1),
        "index_bytes_per_vector": round(st.memory_bytes() / n, 1) if isinstance(st, FaissStore) else None,
    }
    st.close()
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--searches", type=int, default=300)
    p.add_argument("--out", type=Path, default=None, help="folder for rss.json (default: print only)")
    p.add_argument("--probe", nargs=2, metavar=("ROOT", "KIND"), help=argparse.SUPPRESS)
    p.add_argument("--via-map", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.probe:
        print(json.dumps(probe(Path(a.probe[0]), a.probe[1], a.searches, a.via_map)))
        return 0
    with tempfile.TemporaryDirectory(prefix="tier-rss-") as tmp:
        root = Path(tmp) / "data"
        seconds = build(root, a.n, a.dim, a.searches)
        rows = []
        for kind, via_map in [(k, False) for k in KINDS] + [("ivfpq", True)]:
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.tier_rss",
                "--searches",
                str(a.searches),
                "--probe",
                str(root),
                kind,
                *(["--via-map"] if via_map else []),
            ]
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
            print(json.dumps(rows[-1]), flush=True)
    doc = {"n": a.n, "dim": a.dim, "build_seconds": round(seconds, 1), "rows": rows}
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "rss.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
