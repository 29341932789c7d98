"""Resident memory of a fresh process that opens one built store and answers the query set with payloads.

Run as ``python -m benchmarks.memprobe SPEC.json``; prints one JSON line. The baseline is this process's
resident memory after every import (numpy, faiss, qdrant_edge, retrieval) and after loading the queries,
so each configuration is charged only for what opening and querying its store adds. Every engine is
measured the same way: mmapped pages that searching touched count, as they do for the operating system.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return -1


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Open the store named in spec, answer its queries at every query setting, report RSS over the baseline."""
    import faiss
    import numpy as np
    import qdrant_edge  # noqa: F401 - imported by every probe so that baselines match

    from retrieval.settings import Settings
    from retrieval.stores import SearchParams, open_store

    faiss.omp_set_num_threads(int(spec["threads"]))
    xq = np.load(spec["queries"], allow_pickle=False)
    settings = Settings.model_validate(spec["settings"])
    base = _status_kb("VmRSS")
    store = open_store(settings, spec["name"], spec["index"], create=False, read_only=spec["index"] != "qdrant")
    opened = _status_kb("VmRSS")
    hits = 0
    for qp in spec["sweep"]:
        for s in range(0, len(xq), 256):
            res = store.search(xq[s : s + 256], int(spec["k"]), params=SearchParams(**qp))
            hits += sum(len(r) for r in res)
    after = _status_kb("VmRSS")
    store.close()
    return {
        "baseline_rss_bytes": base,
        "open_rss_bytes": opened - base,
        "rss_bytes": after - base,
        "hits_returned": hits,
        "queries": int(len(xq)),
        "query_settings": len(spec["sweep"]),
    }


def measure_ram(spec: dict[str, Any], work: Path, timeout_s: float = 3600) -> dict[str, Any]:
    """Run the probe in a fresh Python process; spec["queries"] is written here from spec.pop("xq")."""
    import numpy as np

    work.mkdir(parents=True, exist_ok=True)
    qpath = work / "probe-queries.npy"
    np.save(qpath, spec.pop("xq"), allow_pickle=False)
    spec = {**spec, "queries": str(qpath)}
    spath = work / "probe-spec.json"
    spath.write_text(json.dumps(spec, default=str))
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.memprobe", str(spath)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    finally:
        qpath.unlink(missing_ok=True)
        spath.unlink(missing_ok=True)
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:] or ["probe failed"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(probe(spec)))


if __name__ == "__main__":
    main()
