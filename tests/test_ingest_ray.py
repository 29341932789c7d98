"""`simlookup ingest --engine ray`: the same final state as the local engine, kill and resume, clear errors.

The Ray tests start a local Ray with 2 CPUs (as `--engine ray` does without `--ray-address`); they are
slow (Ray start-up and one model load per actor), so there are few of them and the corpora are small.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.job import IngestOptions, rejects_of, run_ingest
from retrieval.errors import BackendUnavailableError, ConfigError, SimlookupError
from retrieval.settings import IngestSettings, Settings
from retrieval.verify import verify
from tests.test_ingest import ALL, ROOT, assert_same, mk, snapshot


@pytest.fixture
def ray_installed():  # type: ignore[no-untyped-def]
    return pytest.importorskip("ray.data", reason="the ray extra is not installed: pip install 'simlookup[ray]'")


def is_initialized() -> bool:
    import ray

    return bool(ray.is_initialized())


def with_ray(s: Settings, **kw: object) -> Settings:
    return s.model_copy(update={"ingest": IngestSettings(engine="ray", **kw)})


def write_csv(path: Path, n: int) -> None:
    """A small table with payload columns and rows the job must reject (empty text)."""
    lines = ["id,text,topic,year"]
    for i in range(n):
        text = "" if i % 37 == 5 else f"Sentence {i} about topic {i % 7} written in year {2000 + i % 20}."
        lines.append(f"r{i},{text},t{i % 7},{2000 + i % 20}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_ray_engine_gives_the_local_state_and_reruns_idempotently(tmp_path: Path, minilm, ray_installed) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "docs.csv"
    write_csv(csv, 340)
    opts = IngestOptions(str(csv), "docs", shard_size=64, progress=False)
    local_s, ray_s = mk(tmp_path, "local"), with_ray(mk(tmp_path, "ray"), workers=2)

    local = run_ingest(local_s, opts, encoders={"text": minilm})
    assert is_initialized() is False
    remote = run_ingest(ray_s, opts, encoders={"text": minilm})
    assert not is_initialized()  # the engine shut down the Ray it started

    for key in ("rows_read", "ingested", "rejected", "encoded_rows", "cached_rows", "counts", "indexes"):
        assert getattr(remote, key) == getattr(local, key), key
    assert remote.rejected == 10 and remote.counts == dict.fromkeys(ALL, 330)
    assert rejects_of(ray_s.data_dir, "docs") == rejects_of(local_s.data_dir, "docs")
    assert_same(snapshot(ray_s, "docs"), snapshot(local_s, "docs"))  # ids, payloads, vectors within 1e-5
    assert verify(ray_s, "docs").ok

    again = run_ingest(ray_s, opts, encoders={"text": minilm})  # every shard cached: Ray is not even started
    assert again.encoded_rows == 0 and again.cached_rows == 340 and again.counts == local.counts
    assert_same(snapshot(ray_s, "docs"), snapshot(local_s, "docs"))


def kill_ray_ingest(s: Settings, name: str, limit: int, shard: int) -> int:
    """Start `simlookup ingest --engine ray` and SIGKILL it after a random number (1-3) of cached shards."""
    env = {**os.environ, "SIMLOOKUP_DATA_DIR": str(s.data_dir), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "simlookup", "ingest", "stsb", "--name", name, "--limit", str(limit)]
    cmd += ["--shard-size", str(shard), "--engine", "ray", "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop_after = random.Random(os.getpid()).randint(1, 3)
    deadline = time.time() + 400  # Ray start-up and the actor's model load come first
    shards = 0
    while time.time() < deadline and proc.poll() is None:
        shards = len(list(s.data_dir.glob("cache/**/shard-*.json")))
        if shards >= stop_after:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the job finished (or failed) before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= shards < limit // shard
    return shards


@pytest.mark.slow
def test_killed_ray_ingest_resumes_like_a_local_one(tmp_path: Path, minilm, ray_installed) -> None:  # type: ignore[no-untyped-def]
    limit, shard = 600, 100
    killed = with_ray(mk(tmp_path, "killed"), workers=1)
    shards = kill_ray_ingest(killed, "k", limit, shard)
    opts = IngestOptions("stsb", "k", limit=limit, shard_size=shard, progress=False)
    resumed = run_ingest(killed, opts, encoders={"text": minilm})
    assert resumed.cached_rows >= shards * shard  # finished shards were not encoded again
    assert resumed.encoded_rows + resumed.cached_rows == limit and resumed.ingested == limit

    clean = mk(tmp_path, "clean")
    run_ingest(clean, opts, encoders={"text": minilm})
    assert_same(snapshot(killed, "k"), snapshot(clean, "k"))
    assert verify(killed, "k").ok


@pytest.mark.slow
def test_a_worker_that_sees_another_corpus_refuses_with_a_clear_error(tmp_path: Path, ray_installed) -> None:  # type: ignore[no-untyped-def]
    from ingest.cache import EmbeddingCache
    from ingest.ray_engine import ray_shards
    from retrieval.collection import VectorSpace

    s = with_ray(mk(tmp_path, "d"), workers=1)
    sp = VectorSpace(name="text", encoder="text", model="m", fingerprint="fp", dim=384)
    cache = EmbeddingCache(s.data_dir, "fp", "stsb@stale", "text")
    opts = IngestOptions("stsb", "x", limit=10, progress=False)
    source = ray_shards(s, opts, "stsb@stale", [sp], {"text": cache}, [(0, 10)])
    with pytest.raises(SimlookupError, match="Ray encode stage failed: .*CorpusError: corpus 'stsb' differs"):
        next(source)
    assert not is_initialized() and not list(s.data_dir.glob("cache/**/shard-*"))


def test_missing_ray_says_how_to_install(tmp_path: Path, minilm, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    s = with_ray(mk(tmp_path, "d"))
    with pytest.raises(ConfigError, match=r"pip install 'simlookup\[ray\]'"):
        run_ingest(
            s,
            IngestOptions("stsb", "x", indexes=["flat"], qdrant="none", limit=20, progress=False),
            encoders={"text": minilm},
        )


@pytest.mark.parametrize(
    ("address", "error", "message"),
    [
        ("ray://127.0.0.1:9", BackendUnavailableError, "Ray at ray://127.0.0.1:9 is unreachable"),
        ("127.0.0.1:9", BackendUnavailableError, "is unreachable"),
        ("ray://no-port", ConfigError, "use 'auto'"),
    ],
)
def test_unreachable_ray_address_is_a_clear_error(
    tmp_path: Path, minilm, ray_installed, address: str, error: type, message: str
) -> None:  # type: ignore[no-untyped-def]
    s = with_ray(mk(tmp_path, "d"), ray_address=address, ray_connect_timeout_s=2)
    with pytest.raises(error, match=message):
        run_ingest(
            s,
            IngestOptions("stsb", "x", indexes=["flat"], qdrant="none", limit=20, progress=False),
            encoders={"text": minilm},
        )
    assert not is_initialized()


def test_cli_flags_reach_the_settings(tmp_path: Path) -> None:
    env = {**os.environ, "SIMLOOKUP_DATA_DIR": str(tmp_path / "d"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "simlookup", "ingest", "stsb", "--name", "x", "--engine", "ray", "--workers", "0"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "--workers" in r.stderr and "greater than or equal to 1" in r.stderr, r.stderr


def test_engine_comes_from_the_environment_and_flags_override_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrieval.settings import load_settings

    monkeypatch.setenv("SIMLOOKUP_INGEST__ENGINE", "ray")
    monkeypatch.setenv("SIMLOOKUP_INGEST__WORKERS", "3")
    s = load_settings()
    assert s.ingest == IngestSettings(engine="ray", workers=3)
    assert s.with_ingest(engine="local", workers=None).ingest == IngestSettings(engine="local", workers=3)
    with pytest.raises(ConfigError, match="--gpus-per-worker"):
        s.with_ingest(gpus_per_worker=-1)
