"""What auto-tuning costs beside the build it follows (issue 24 item 4: at most 10% at 100k and 1M).

``python -m benchmarks.tuning_cost --n 100000 --kinds ivf,ivfpq,hnsw,qdrant --out benchmarks/results/tuning-cost``:
for each kind, one store on ``benchmarks.datasets.clustered`` (the scale curve's distribution) at one OpenMP
thread, the time to upsert and build it, then ``retrieval.tuning.tune`` as a collection build runs it. Both are
read as wall time and as the process's CPU time: on a machine shared with other work the CPU time is the fair
ratio (wall time there includes waiting for a core). One JSON file per (kind, N).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def measure(kind: str, n: int, seed: int = 0) -> dict[str, Any]:
    """Build one ``kind`` store of ``n`` clustered 384-d points, tune it, and time both."""
    import faiss

    from benchmarks.datasets import clustered
    from retrieval import tuning
    from retrieval.collection import Collection, CollectionManifest, VectorSpace
    from retrieval.settings import QdrantSettings, Settings

    faiss.omp_set_num_threads(1)
    data = clustered(n=n, d=384, nq=10, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        s = Settings(data_dir=Path(tmp) / "data", qdrant=QdrantSettings(mode="edge"))
        space = VectorSpace(name="text", encoder="text", model="m", fingerprint="fp", dim=384)
        m = CollectionManifest(name="t", corpus="synthetic", corpus_fingerprint="x", modality="text",
                               vectors={"text": space}, indexes=[kind], complete=True)
        coll = Collection(s, "t", read_only=False, manifest=m)
        st = coll.store(kind, "text", create=True)
        load0 = os.getloadavg()[0]
        w0, c0 = time.perf_counter(), time.process_time()
        st.upsert(data.point_ids(), data.xb, [{} for _ in range(n)])
        st.build()
        build_wall, build_cpu = time.perf_counter() - w0, time.process_time() - c0
        w0, c0 = time.perf_counter(), time.process_time()
        op = tuning.tune(st)
        tune_wall, tune_cpu = time.perf_counter() - w0, time.process_time() - c0
        coll.close()
    return {
        "kind": kind, "n": n, "threads": 1, "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "build_wall_s": round(build_wall, 2), "build_cpu_s": round(build_cpu, 2),
        "tune_wall_s": round(tune_wall, 2), "tune_cpu_s": round(tune_cpu, 2),
        "tune_over_build_cpu": round(tune_cpu / build_cpu, 4), "tune_over_build_wall": round(tune_wall / build_wall, 4),
        "tuned": op.to_dict() if op else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--kinds", default="ivf,ivfpq,hnsw,qdrant")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/tuning-cost"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in args.kinds.split(","):
        r = measure(kind, args.n)
        (args.out / f"{kind}-n{args.n}.json").write_text(json.dumps(r, indent=1) + "\n", encoding="utf-8")
        print(f"{kind} n={args.n}: tune {r['tune_cpu_s']} s CPU / build {r['build_cpu_s']} s CPU = "
              f"{100 * float(r['tune_over_build_cpu']):.1f}% (wall {100 * float(r['tune_over_build_wall']):.1f}%, "
              f"load {r['load_avg']})", flush=True)


if __name__ == "__main__":
    main()
