"""How a FAISS point store scales (issue 25 item 3): open time, memory after open and filtered-search time.

``python -m benchmarks.pointstore_scale --n 1000000`` builds a collection of N synthetic 384-d points (payloads
``{"genre": one of 20, "year": one of 75}``) as a FAISS flat store, then opens it read-only and as a writer, each
in a fresh child process: seconds to open, resident memory after open beyond the child's imports (VmRSS) and its
peak (VmHWM), and per filter the p50 of a k=10 search (flat: exact over the filter's matches, the matches' vectors
gathered from the file map; ``flat_resident`` off, so no vector is copied into the process) and the first hits.

``--compare SRC`` runs the same children on the source tree ``SRC`` too (a checkout of another commit: the
previous point store, which loaded every id and payload at open), against the same files: both must return the
same hits. Results: one JSON per N under ``--out`` and a ``report.md``. Needs about 1.6 kB of disk per point.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.runner import environment

DIM = 384
BATCH = 10_000
GENRES = 20
YEARS = 75
FILTERS: dict[str, dict[str, Any]] = {
    "genre (5%)": {"genre": "g3"},
    "year range (6.7%)": {"year": {"$gte": 2000, "$lte": 2004}},
    "genre and year >= 2010 (0.9%)": {"genre": "g3", "year": {"$gte": 2010}},
    "two genres, one year (0.13%)": {"genre": {"$in": ["g1", "g2"]}, "year": 1999},
}

CHILD = r"""
import json, os, sys, time
def mem():
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0]) * 1024
    return out
import numpy as np
from pathlib import Path
from retrieval.settings import FaissSettings, Settings
from retrieval.stores import open_store
a = json.loads(sys.argv[1])
base = mem()
s = Settings(data_dir=Path(a["data_dir"]), faiss=FaissSettings(flat_resident=False))
t0 = time.perf_counter()
st = open_store(s, a["name"], "flat", create=False, read_only=a["read_only"])
opened = time.perf_counter() - t0
after = mem()
q = np.random.default_rng(7).standard_normal((a["nq"], a["dim"])).astype(np.float32)
searches = {}
for name, flt in a["filters"].items():
    st.search(q[0], k=10, filter=flt)
    times, first = [], []
    for i in range(a["nq"]):
        t = time.perf_counter()
        hits = st.search(q[i], k=10, filter=flt)[0]
        times.append(time.perf_counter() - t)
        if i < 3:
            first.append([h.id for h in hits])
    searches[name] = {"p50_ms": 1000 * float(np.median(times)), "first_hits": first}
count = st.count()
st.close()
import retrieval
print(json.dumps({"module": retrieval.__file__, "open_s": opened, "count": count, "rss_base": base["VmRSS"],
                  "rss_after_open": after["VmRSS"], "anon_base": base["RssAnon"], "anon_after_open": after["RssAnon"],
                  "hwm_after_open": after["VmHWM"], "searches": searches}))
"""


def payload(i: int) -> dict[str, Any]:
    """The payload of point i (deterministic: the matches of each filter are known)."""
    return {"genre": f"g{(i * 7919) % GENRES}", "year": 1950 + (i * 31) % YEARS}


def matches(n: int) -> dict[str, int]:
    """How many of the n points each filter matches (from the payload rule, not the store)."""
    from retrieval.filters import Filter

    probe = [payload(i) for i in range(GENRES * YEARS)]  # the rule repeats every 1500 points
    out = {}
    for name, spec in FILTERS.items():
        f = Filter.from_dict(spec)
        per = np.array([f.matches(p) for p in probe])
        out[name] = int(per.sum()) * (n // len(probe)) + int(per[: n % len(probe)].sum())
    return out


def status(key: str) -> int:
    """A field of /proc/self/status in bytes (VmHWM: peak resident; RssAnon: anonymous resident memory)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def build(data_dir: Path, name: str, n: int) -> dict[str, Any]:
    """Write n points through the FAISS store API (flat kind), batch by batch; the build's seconds and peak RSS."""
    from retrieval.settings import FaissSettings, Settings
    from retrieval.stores import open_store

    s = Settings(data_dir=data_dir, faiss=FaissSettings(flat_resident=False))
    t0 = time.perf_counter()
    st = open_store(s, name, "flat", dim=DIM)
    anon = [status("RssAnon")]
    for lo in range(0, n, BATCH):
        hi = min(lo + BATCH, n)
        x = np.random.default_rng(lo).standard_normal((hi - lo, DIM), dtype=np.float32)
        st.upsert([f"p{i}" for i in range(lo, hi)], x, [payload(i) for i in range(lo, hi)])
        if (hi // BATCH) % 20 == 0:
            st.flush()
            anon.append(status("RssAnon"))
            print(f"  {hi} points, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    st.close()
    folder = data_dir / "faiss" / name / "points"
    files = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    return {
        "build_s": time.perf_counter() - t0,
        "build_peak_rss": status("VmHWM"),  # file pages of the mapped vector file being written count here
        "build_anon_start": anon[0],  # anonymous memory: what grows with Python objects
        "build_anon_max": max(anon),
        "build_anon_end": anon[-1],
        "files": files,
    }


def child(src: Path | None, args: dict[str, Any]) -> dict[str, Any]:
    """One fresh process: open, measure, search (with ``src`` first on the path: another source tree)."""
    root = (src or Path(__file__).resolve().parent.parent).resolve()
    env = {**os.environ, "PYTHONPATH": str(root)}  # run from that tree: `python -c` puts its folder first
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)], env=env, cwd=root, capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise RuntimeError(f"child failed ({out.returncode}): {out.stderr[-2000:]}")
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    res["source"] = str(root)
    res["rss_open_delta"] = res["rss_after_open"] - res["rss_base"]
    res["anon_open_delta"] = res["anon_after_open"] - res["anon_base"]
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/pointstore"))
    ap.add_argument("--data-dir", type=Path, default=None, help="where the store is built (default: a folder in --out)")
    ap.add_argument("--nq", type=int, default=30, help="searches per filter")
    ap.add_argument("--compare", type=Path, default=None, help="another source tree to open the same store with")
    ap.add_argument("--compare-label", default="previous")
    ap.add_argument("--keep", action="store_true", help="keep the built store")
    ap.add_argument("--max-matches", type=int, default=None, help="skip filters matching more points (big N)")
    a = ap.parse_args(argv)
    data_dir = a.data_dir or a.out / f".data-{a.n}"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    env = environment(1)
    load = [os.getloadavg()[0]]
    print(f"building {a.n} points in {data_dir}", file=sys.stderr)
    counts = matches(a.n)
    filters = {k: v for k, v in FILTERS.items() if a.max_matches is None or counts[k] <= a.max_matches}
    result: dict[str, Any] = {"n": a.n, "dim": DIM, "environment": env, "matches": counts, "filters": filters}
    result["build"] = build(data_dir, "scale", a.n)
    load.append(os.getloadavg()[0])
    runs: dict[str, dict[str, Any]] = {}
    for label, src in [("this", None), *([(a.compare_label, a.compare)] if a.compare else [])]:
        for mode in ("read_only", "writer"):
            args = {
                "data_dir": str(data_dir),
                "name": "scale",
                "read_only": mode == "read_only",
                "nq": a.nq,
                "dim": DIM,
                "filters": filters if mode == "read_only" else dict(list(filters.items())[:1]),  # a writer: one
            }
            print(f"opening with {label} ({mode})", file=sys.stderr, flush=True)
            runs[f"{label}/{mode}"] = child(src, args)
            load.append(os.getloadavg()[0])
    result["runs"] = runs
    result["load_average"] = {"start": load[0], "max": max(load), "end": load[-1]}
    if a.compare:
        mine, theirs = runs["this/read_only"]["searches"], runs[f"{a.compare_label}/read_only"]["searches"]
        result["same_hits"] = all(mine[k]["first_hits"] == theirs[k]["first_hits"] for k in mine)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"n{a.n}.json").write_text(json.dumps(result, indent=2) + "\n")
    if not a.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    write_report(a.out)


def _mib(v: int | None) -> str:
    return "" if v is None else f"{v / 2**20:.0f} MiB"


def write_report(out: Path) -> None:
    """report.md from every n*.json under ``out``."""
    rows = sorted((json.loads(p.read_text()) for p in out.glob("n*.json")), key=lambda r: r["n"])
    lines = [
        "# FAISS point store at scale (issue 25 item 3)",
        "",
        "`python -m benchmarks.pointstore_scale --n N [--compare SRC]`: N synthetic 384-d points with payloads "
        '`{"genre": 1 of 20, "year": 1 of 75}` in a FAISS flat store; each open in a fresh process. RSS: resident '
        "memory after the open beyond the process's imports (vectors are not read: `flat_resident` off). Search: "
        "p50 of a k=10 search over the filter's matches (exact: the matches' vectors gathered from the file map).",
        "",
        "| N | code | open | open (ms) | RSS after open | per point | anonymous | peak RSS | "
        + " | ".join(FILTERS)
        + " |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(FILTERS),
    ]
    for r in rows:
        for key, run in r["runs"].items():
            label, mode = key.split("/")
            searches = [run["searches"].get(f, {}).get("p50_ms") for f in FILTERS]
            cells = ["" if v is None else f"{v:.1f} ms" for v in searches]
            delta, anon, peak = run["rss_open_delta"], _mib(run.get("anon_open_delta")), _mib(run["hwm_after_open"])
            head = f"| {r['n']:,} | {label} | {mode} | {1000 * run['open_s']:.0f} | {delta / 2**20:.1f} MiB "
            lines.append(head + f"| {delta / r['n']:.0f} B | {anon} | {peak} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| N | build (s) | build peak RSS | anonymous (start / max / end) | files | load (start / max / end) "
        "| same hits as compared |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b, la = r["build"], r["load_average"]
        files = ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in sorted(b["files"].items()) if v)
        anon = " / ".join(_mib(b.get(k)) for k in ("build_anon_start", "build_anon_max", "build_anon_end"))
        lines.append(
            f"| {r['n']:,} | {b['build_s']:.0f} | {b['build_peak_rss'] / 2**20:.0f} MiB | {anon} | {files} | "
            f"{la['start']:.1f} / {la['max']:.1f} / {la['end']:.1f} | {r.get('same_hits', '')} |"
        )
    lines += [
        "",
        "Build peak RSS counts the pages of the memory-mapped vector file being written (file pages, which the kernel "
        "writes back and drops); the anonymous memory is what the process holds itself: the payload index, the id "
        "hashes and the live set, a few dozen bytes per point, and no Python object per point. The filtered "
        "searches are flat's exact scan of the matches' vectors: they measure that gather (and, on a loaded machine, "
        "faiss' result heap), not the point store, whose part (the match, one SQLite read of the hits' rows) is "
        "about 0.1 ms a search.",
    ]
    notes = [f"{r['n']:,}: {r['note']}" for r in rows if r.get("note")]
    lines += ["", *(f"Note, {x}" for x in notes)] if notes else []
    lines += ["", "Matches per filter: " + "; ".join(f"{r['n']:,}: {r['matches']}" for r in rows), ""]
    (out / "report.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
