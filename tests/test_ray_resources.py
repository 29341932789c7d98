"""`--engine ray` on a cluster where no encoder actor can start (issue 21 item 6): `--gpus-per-worker 1` on a
machine without a GPU waited forever ("The job may hang forever unless the cluster scales up"); it now fails
within the connect timeout, naming the missing resource."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.ray_engine import actor_demand, actors_that_fit

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("nodes", "gpus", "fit"),
    [
        ([{"CPU": 2.0}], 1, 0),  # the reported case: no GPU anywhere
        ([{"CPU": 2.0}], 0, 2),
        ([{"CPU": 0.0, "GPU": 4.0}, {"CPU": 8.0}], 1, 0),  # GPUs and CPUs on different nodes: no actor fits
        ([{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 2.0}], 1, 3),
        ([{"CPU": 8.0, "GPU": 1.0}], 0.5, 2),  # fractional GPUs
        ([{"CPU": 1.0, "GPU": 0.99}], 1, 0),
        ([], 0, 0),
    ],
)
def test_actors_that_fit(nodes: list[dict[str, float]], gpus: float, fit: int) -> None:
    assert actors_that_fit(nodes, actor_demand(gpus)) == fit


@pytest.mark.slow
def test_gpus_the_cluster_lacks_fail_within_the_connect_timeout(tmp_path: Path) -> None:
    pytest.importorskip("ray.data", reason="the ray extra is not installed: pip install 'simlookup[ray]'")
    csv = tmp_path / "docs.csv"
    csv.write_text("id,text\n" + "".join(f"r{i},sentence number {i}\n" for i in range(20)))
    env = {
        **os.environ,
        "SIMLOOKUP_DATA_DIR": str(tmp_path / "d"),
        "SIMLOOKUP_INGEST__RAY_CONNECT_TIMEOUT_S": "2",
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [sys.executable, "-m", "simlookup", "ingest", str(csv), "--name", "g", "--index", "flat", "--qdrant", "none"]
    cmd += ["--engine", "ray", "--workers", "1", "--gpus-per-worker", "1000", "--no-progress"]
    try:  # before the fix this waited forever: the timeout only turns a hang into a failure
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail("--gpus-per-worker beyond the cluster's GPUs hung instead of failing")
    assert r.returncode == 2, r.stderr
    assert "no node of the local Ray (this machine) has 1 CPU and 1000 GPU for an encoder actor" in r.stderr
    assert "--gpus-per-worker 0" in r.stderr and "Traceback" not in r.stderr
