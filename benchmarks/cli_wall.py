"""Wall time of `simlookup search` and `simlookup verify` as a user runs them: a fresh process each time, with a
running service for the collection (they go through it) and without one (in-process). Median of the repeats.

    python -m benchmarks.cli_wall --name s --repeats 5 --out benchmarks/results/serve
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.load import free_port, start_server
from retrieval.settings import load_settings

COMMANDS: dict[str, list[str]] = {
    "verify": ["verify"],
    "search TEXT": ["search", "A man is playing a flute.", "-k", "5"],
}


def wall(args: list[str], repeats: int, env: dict[str, str]) -> dict[str, Any]:
    """Median and every wall time (s) of `simlookup ARGS`, a fresh interpreter per run."""
    times: list[float] = []
    via = False
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "simlookup", *args], env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"simlookup {' '.join(args)} failed: {r.stderr[-2000:]}")
        via = via or " via http" in r.stdout + r.stderr
    return {"median_s": statistics.median(times), "wall_s": times, "printed_via_service": via}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--name", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    settings = load_settings()
    env = {**os.environ, "SIMLOOKUP_DATA_DIR": str(settings.data_dir)}
    res: dict[str, Any] = {"name": a.name, "load_average_start": list(os.getloadavg()), "in_process": {}}
    for label, cmd in COMMANDS.items():
        res["in_process"][label] = wall([*cmd, "--name", a.name], a.repeats, env)
    proc = start_server(settings, a.name, free_port())
    try:
        res["service_record"] = (settings.data_dir / "run" / f"serve-{a.name}.json").exists()
        res["with_service"] = {label: wall([*cmd, "--name", a.name], a.repeats, env) for label, cmd in COMMANDS.items()}
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    res["load_average_end"] = list(os.getloadavg())
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "cli_wall.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
