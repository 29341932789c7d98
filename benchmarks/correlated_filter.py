"""Filtered search under a filter correlated with the data, on every engine (issue 25 item 6's follow-up).

    python -m benchmarks.correlated_filter [--n 100000] [--limit 100] --out benchmarks/results/correlated-filter

Seeded clustered 384-d vectors; each point's ``region`` is its nearest of 100 anchors drawn from the points
(``store_targets.regions_for``: whole clusters of one part of the space, ~1% each); query j filters on region
j % 100, so its matches mostly lie away from it. Each engine at its tuned default (no query parameters) is
compared with flat's exact filtered top-10 (plain id overlap), unfiltered and filtered; the FAISS kinds run with
``exact_filter_limit`` = ``--limit`` so that the regions (about N/100 matches) go through the index rather than
the exact path. p50 is one query per call. One JSON file with the paths each store reports.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.datasets import clustered
from benchmarks.store_targets import regions_for
from benchmarks.versions import library_versions
from retrieval.settings import FaissSettings, QdrantSettings, Settings
from retrieval.stores import open_store

ENGINES = ("ivf", "hnsw", "qdrant")


def run(n: int, limit: int, nq: int = 100, seed: int = 0) -> dict[str, Any]:
    """Recall and p50 of each engine, unfiltered and under the correlated filter."""
    ds = clustered(n=n, d=384, nq=nq, seed=seed)
    region = regions_for(ds.xb, seed)
    ids = [f"p{i}" for i in range(n)]
    payloads = [{"region": int(r)} for r in region]
    work = Path(tempfile.mkdtemp(prefix="simlookup-correlated-"))
    flat = open_store(Settings(data_dir=work / "flat"), "c", "flat", dim=384)
    flat.upsert(ids, ds.xb, payloads)
    flat.build()
    out: dict[str, Any] = {"n": n, "nq": nq, "exact_filter_limit": limit, "engines": {}, "load_start": os.getloadavg()}
    for kind in ENGINES:
        faiss_settings = FaissSettings(exact_filter_limit=limit)
        s = Settings(data_dir=work / kind, faiss=faiss_settings, qdrant=QdrantSettings(mode="edge"))
        st = open_store(s, "c", kind, dim=384)
        st.upsert(ids, ds.xb, payloads)
        st.build()
        rows: dict[str, Any] = {}
        for case in ("unfiltered", "correlated"):
            found = total = 0
            times = []
            for j, q in enumerate(ds.xq):
                flt = {"region": j % 100} if case == "correlated" else None
                t0 = time.perf_counter()
                got = st.search(q, 10, filter=flt)[0]
                times.append(time.perf_counter() - t0)
                want = flat.search(q, 10, filter=flt)[0]
                found += len({h.id for h in got} & {h.id for h in want})
                total += len(want)
            rows[case] = {"id_recall@10": round(found / total, 4), "p50_ms": round(statistics.median(times) * 1e3, 3)}
        rows["paths"] = st.info().get("searches", {})
        rows["tuning"] = st.info().get("tuning")
        out["engines"][kind] = rows
        st.close()
    flat.close()
    shutil.rmtree(work, ignore_errors=True)
    out["load_end"] = os.getloadavg()
    out["versions"] = library_versions()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--limit", type=int, default=100, help="the FAISS kinds' exact_filter_limit")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    doc = run(a.n, a.limit)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results-n{a.n}.json").write_text(json.dumps(doc, indent=1, default=str))
    for kind, r in doc["engines"].items():
        print(kind, {k: v for k, v in r.items() if k in ("unfiltered", "correlated")})


if __name__ == "__main__":
    main()
