"""Ingest rows/s, `--engine ray` against `--engine local`, same machine, same run, interleaved rounds.

Each run is a fresh `simlookup ingest stsb --limit N` in its own data dir (cold embedding cache), with
the default stores (FAISS flat, ivf, ivfpq, hnsw and Qdrant Edge). Writes results.json and report.md here.

    python benchmarks/results/ingest-ray/run_bench.py --rows 3000 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def one_run(engine: str, rows: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"ingest-{engine}-") as d:
        env = {**os.environ, "SIMLOOKUP_DATA_DIR": d, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "simlookup", "ingest", "stsb", "--name", "b", "--limit", str(rows)]
        cmd += ["--engine", engine, "--workers", str(workers), "--no-progress", "--json"]
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"{engine} failed:\n{r.stderr[-3000:]}")
        summ = json.loads(r.stdout)
    sec = summ["seconds"]
    return {
        "engine": engine,
        "rows": summ["rows_read"],
        "ingested": summ["ingested"],
        "wall_s": round(wall, 2),
        "job_s": round(sec["total"], 2),
        "encode_s": round(sec["encode"], 2),
        "rows_per_s_wall": round(summ["rows_read"] / wall, 1),
        "rows_per_s_job": round(summ["rows_read"] / sec["total"], 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": {k: round(v, 2) for k, v in sec.items()},
    }


def report(res: dict[str, Any]) -> str:
    lines = [
        "# Ingest throughput: `--engine ray` vs `--engine local`",
        "",
        f"{res['rows']} STS-B rows, MiniLM, default stores (FAISS flat/ivf/ivfpq/hnsw + Qdrant Edge), cold cache, "
        f"{res['rounds']} interleaved rounds, Ray: local in-process Ray with {res['workers']} encoder actors "
        f"(1 CPU each). Machine: {res['cpu']}, {res['cores']} cores, shared with other jobs: **noisy, compare "
        "within a round, not with other reports**.",
        "",
        "| round | engine | wall s | job s | encode stage s | rows/s (wall) | rows/s (job) | load avg before → after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["runs"]:
        lines.append(
            f"| {r['round']} | {r['engine']} | {r['wall_s']} | {r['job_s']} | {r['encode_s']} | "
            f"{r['rows_per_s_wall']} | {r['rows_per_s_job']} | {r['load_before'][0]} → {r['load_after'][0]} |"
        )
    lines += [
        "",
        "wall: the whole `simlookup ingest` process (imports, model load, Ray start-up); job: `run_ingest` "
        "from reading the corpus to the built indexes; encode stage: time the job waited for encoded shards "
        "(for ray this includes starting Ray and each actor's model load).",
        "",
        res["conclusion"],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    from benchmarks.runner import environment

    env = environment(threads=0)
    env["versions"]["ray"] = metadata.version("ray")
    runs = []
    for rnd in range(1, a.rounds + 1):
        for engine in ("local", "ray"):
            r = one_run(engine, a.rows, a.workers)
            r["round"] = rnd
            runs.append(r)
            print(json.dumps(r), flush=True)
    med = {
        e: sorted(r["rows_per_s_job"] for r in runs if r["engine"] == e)[(a.rounds - 1) // 2]
        for e in ("local", "ray")
    }
    res = {
        "rows": a.rows,
        "rounds": a.rounds,
        "workers": a.workers,
        **env,
        "runs": runs,
        "median_rows_per_s_job": med,
        "conclusion": (
            f"Median rows/s (job): local {med['local']}, ray {med['ray']} "
            f"(ray/local = {med['ray'] / med['local']:.2f}). On one 2-core box Ray cannot add cores: it adds "
            "start-up (Ray, then one model load per actor) and moves the same two cores from one 2-thread "
            "encoder to two 1-thread actors. Its gain comes from more machines or GPUs (see the README's "
            "scaling plan)."
        ),
    }
    (HERE / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    (HERE / "report.md").write_text(report(res))
    print(res["conclusion"])


if __name__ == "__main__":
    main()
