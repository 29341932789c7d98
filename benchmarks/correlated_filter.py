"""Filtered search under a filter correlated with the data, on every engine (issue 25 item 6's follow-up).

    python -m benchmarks.correlated_filter [--n 100000] [--limit 100] --out benchmarks/results/correlated-filter

Seeded clustered 384-d vectors; each point's ``region`` is its nearest of 100 anchors drawn from the points
(``store_targets.regions_for``: whole clusters of one part of the space, ~1% each); query j filters on region
j % 100, so its matches mostly lie away from it. Each engine at its tuned default (no query parameters) is
compared with the exact filtered top-10 (``store_targets.filtered_truth``; id_recall@10 by plain id overlap,
recall@10 with ties credited), unfiltered and filtered; the FAISS kinds run with ``exact_filter_limit`` =
``--limit`` so that the regions (about N/100 matches) are not sent to the exact path by their count alone, and
``--cost`` as their ``exact_filter_cost`` (0: the index whenever more than ``--limit`` match; the default: the IVF
kinds answer exactly the filters that match at most twice the rows their index would read). p50 is one
query per call, the lowest of ``REPEATS`` after a warm-up pass (``store_targets.replay_filtered``). One JSON file
with the paths each store reports.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.datasets import clustered
from benchmarks.store_targets import filtered_truth, regions_for, replay_filtered
from benchmarks.target_calls import recalls
from benchmarks.versions import library_versions
from retrieval.settings import FaissSettings, QdrantSettings, Settings
from retrieval.stores import open_store

ENGINES = ("ivf", "hnsw", "qdrant")
REPEATS = 3


def run(
    n: int, limit: int, nq: int = 100, seed: int = 0, repeats: int = REPEATS, cost: float | None = None
) -> dict[str, Any]:
    """Recall and p50 of each engine, unfiltered and under the correlated filter. ``cost``: the FAISS kinds'
    ``exact_filter_cost`` (None: the library's default; 0: the index whenever more than ``limit`` points match)."""
    ds = clustered(n=n, d=384, nq=nq, seed=seed)
    region = regions_for(ds.xb, seed)
    ids = [f"p{i}" for i in range(n)]
    payloads = [{"region": int(r)} for r in region]
    fq = [j % 100 for j in range(nq)]  # query j filters on region j % 100
    # exact top-10: among every point (one value they all hold), and among the query's region
    cases = {
        "unfiltered": (None, filtered_truth(ds.xb, ds.xq, np.zeros(n, dtype=np.int64), [0] * nq)),
        "correlated": ("region", filtered_truth(ds.xb, ds.xq, region, fq)),
    }
    work = Path(tempfile.mkdtemp(prefix="simlookup-correlated-"))
    out: dict[str, Any] = {
        "n": n, "nq": nq, "repeats": repeats, "exact_filter_limit": limit, "engines": {}, "load_start": os.getloadavg()
    }
    faiss_settings = FaissSettings(exact_filter_limit=limit)
    if cost is not None:
        faiss_settings = faiss_settings.model_copy(update={"exact_filter_cost": cost})
    out["exact_filter_cost"] = faiss_settings.exact_filter_cost
    try:
        for kind in ENGINES:
            s = Settings(data_dir=work / kind, faiss=faiss_settings, qdrant=QdrantSettings(mode="edge"))
            st = open_store(s, "c", kind, dim=384)
            try:
                st.upsert(ids, ds.xb, payloads)
                st.build()
                rows: dict[str, Any] = {}
                for case, (field, truth) in cases.items():
                    p50s, res = replay_filtered(st, ds.xq, field, fq, None, repeats)  # the tuned default
                    rows[case] = {**recalls(res, truth, ds.xq, ds.xb), "p50_ms": round(min(p50s) / 1e3, 3)}
                rows["paths"] = st.info().get("searches", {})  # every search above, warm-up passes included
                rows["tuning"] = st.info().get("tuning")
                out["engines"][kind] = rows
            finally:
                st.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["load_end"] = os.getloadavg()
    out["versions"] = library_versions()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--limit", type=int, default=100, help="the FAISS kinds' exact_filter_limit")
    ap.add_argument(
        "--cost",
        type=float,
        help="the FAISS kinds' exact_filter_cost (default: the library's; 0: only --limit sends a filter to the "
        "exact path); the file name says it when given",
    )
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    doc = run(a.n, a.limit, cost=a.cost)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"results-n{a.n}" + ("" if a.cost is None else f"-cost{a.cost:g}")
    (out / f"{name}.json").write_text(json.dumps(doc, indent=1, default=str))
    for kind, r in doc["engines"].items():
        print(kind, {k: v for k, v in r.items() if k in ("unfiltered", "correlated")})


if __name__ == "__main__":
    main()
