"""The harness takes recall from the timed result lists, warms up, and alternates layer and raw calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.datasets import Dataset, clustered
from benchmarks.engines import BuildConfig, Engine, FaissEngine
from benchmarks.metrics import distances, recall_with_ties
from benchmarks.runner import REPEATS, WARMUP_SINGLE, Truth, measure
from retrieval.settings import Settings
from retrieval.stores import Hit


class FakeEngine(Engine):
    """Returns lists of a known quality per kind of call, and logs every call in order.

    warm-up batch (the first batch call): no true neighbour; timed k=10 batch: 7 of 10; one-query calls:
    5 of 10; k=100 calls: all 100. A harness that took recall from any call but the timed one would see
    another number.
    """

    def __init__(self, ds: Dataset) -> None:
        super().__init__(BuildConfig("fake", "fake", "fake"), Path("."), ds.dim, ds.metric)
        self.ds = ds
        d = distances(ds.xq, ds.xb, np.tile(np.arange(len(ds.xb)), (len(ds.xq), 1)), ds.metric)
        self.order = np.argsort(d, axis=1, kind="stable")
        self.ids = ds.point_ids()
        self.log: list[str] = []
        self.batch_calls = 0

    def settings(self) -> Settings:
        return Settings(data_dir=Path("unused"))

    def _lists(self, rows: range, k: int, good: int) -> list[list[Hit]]:
        out = []
        for i in rows:
            pos = list(self.order[i, :good]) + list(self.order[i, ::-1][: k - good])
            out.append([Hit(self.ids[p], 0.0, {}) for p in pos])
        return out

    def search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> list[list[Hit]]:
        self.log.append("L")
        if len(q) == 1:
            row = int(np.flatnonzero((self.ds.xq == q[0]).all(axis=1))[0])
            return self._lists(range(row, row + 1), k, 5 if k == 10 else k)
        self.batch_calls += 1
        if k != 10:
            return self._lists(range(len(q)), k, k)
        return self._lists(range(len(q)), k, 0 if self.batch_calls == 1 else 7)

    def open_raw(self) -> bool:
        return True

    def raw_search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> Any:
        self.log.append("R")
        return None


@pytest.fixture(scope="module")
def small() -> Dataset:
    return clustered(n=400, d=16, nq=12, seed=3)


def test_recall_comes_from_the_timed_lists(small: Dataset) -> None:
    eng = FakeEngine(small)
    r = measure(eng, small, Truth.of(small, 100), {}, n_single=8, wide=True)
    assert r["recall@10"] == pytest.approx(0.7)  # the timed batch (warm-up gave 0, k=100 gives 1)
    assert r["batch"]["recall@10_all_runs"] == [0.7]
    assert r["single"]["recall@10"] == pytest.approx(0.5)  # the timed one-query calls
    assert r["recall@1"] == pytest.approx(1.0)
    assert r["recall@100"] == pytest.approx(1.0)  # its own k=100 series


def test_layer_and_raw_alternate_after_warmup(small: Dataset) -> None:
    eng = FakeEngine(small)
    n_single = 6
    measure(eng, small, Truth.of(small, 10), {}, n_single=n_single)
    log = "".join(eng.log)
    warm = "LR" + "LR" * WARMUP_SINGLE
    batch = "".join("LR" if i % 2 == 0 else "RL" for i in range(REPEATS))
    single = "".join("LR" if i % 2 == 0 else "RL" for i in range(n_single))
    assert log == warm + batch + single


def test_ties_count_as_found() -> None:
    true = np.array([[0.1, 0.2, 0.3]])
    # a different point at the 3rd true distance (a tie) counts; one beyond the tolerance does not
    assert recall_with_ties(np.array([[0.1, 0.2, 0.3 + 5e-4]]), true, 3) == 1.0
    assert recall_with_ties(np.array([[0.1, 0.2, 0.31]]), true, 3) == pytest.approx(2 / 3)
    assert recall_with_ties(np.array([[0.1, np.inf, np.inf]]), true, 3) == pytest.approx(1 / 3)


def test_hnsw_recall_depends_on_ef_at_k(tmp_path: Path) -> None:
    """A weak graph: ef=k and ef=8k must report different recall@10 (a k=100 search would hide it)."""
    ds = clustered(n=4000, d=32, nq=60, seed=11)
    cfg = BuildConfig("hnsw", "faiss", "hnsw", {"hnsw_m": 4, "ef_construction": 10})
    eng = FaissEngine(cfg, tmp_path / "c", ds.dim, ds.metric)
    truth = Truth.of(ds, 10)
    eng.build(ds.point_ids(), ds.xb, None)
    try:
        assert eng.open_raw()
        low = measure(eng, ds, truth, {"hnsw_ef": 10}, n_single=20)
        high = measure(eng, ds, truth, {"hnsw_ef": 80}, n_single=20)
        direct = eng.search(ds.xq, 10, {"hnsw_ef": 10})
    finally:
        eng.close()
    assert high["recall@10"] - low["recall@10"] >= 0.05, (low["recall@10"], high["recall@10"])
    # the reported figure is the ef=10, k=10 search's own recall
    pos_of = {pid: i for i, pid in enumerate(ds.point_ids())}
    found = np.array([[pos_of[h.id] for h in hits] for hits in direct])
    expect = recall_with_ties(distances(ds.xq, ds.xb, found, ds.metric), truth.dist, 10)
    assert low["recall@10"] == pytest.approx(expect)


def test_exact_topups_are_counted_and_marked(tmp_path: Path) -> None:
    """IVF with many small lists at nprobe=1 returns fewer than k hits: the layer answers those queries
    exactly, and the result row says how many (the report marks the recall)."""
    from benchmarks.report import topup_note

    ds = clustered(n=600, d=16, nq=40, seed=5)
    cfg = BuildConfig("ivf", "faiss", "ivf", {"nlist": 100})
    eng = FaissEngine(cfg, tmp_path / "c", ds.dim, ds.metric)
    eng.build(ds.point_ids(), ds.xb, None)
    try:
        assert eng.open_raw()
        short = measure(eng, ds, Truth.of(ds, 10), {"nprobe": 1}, n_single=40)
        wide = measure(eng, ds, Truth.of(ds, 10), {"nprobe": 100}, n_single=40)
        raw = eng.raw_search(ds.xq, 10, {"nprobe": 1})
    finally:
        eng.close()
    raw_short = int((raw[1][:, 9] < 0).sum())  # queries the bare index answers with under 10 hits
    assert raw_short > 0
    assert short["batch"]["exact_topup_queries"] == raw_short
    assert short["single"]["exact_topup_queries"] == raw_short
    assert wide["batch"]["exact_topup_queries"] == wide["single"]["exact_topup_queries"] == 0
    results = {
        "dataset": {"name": "t", "n": 600, "n_base": 600, "dim": 16, "nq": 40, "metric": ds.metric},
        "configs": [{"label": "faiss-ivf", "results": [short, wide]}],
    }
    note = topup_note(results)
    assert note is not None and f"faiss-ivf nprobe=1: {raw_short} of 40 queries at k=10" in note
    assert "nprobe=100" not in note


class PayloadFreeEngine(FakeEngine):
    """FakeEngine with the layer's payload-free path: logged B, its lists worse than the layer's (1 of 10)."""

    def open_no_payload(self) -> bool:
        return True

    def no_payload_search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> list[list[Hit]]:
        self.log.append("B")
        return self._lists(range(len(q)), k, 1)


def test_payload_free_path_is_timed_in_turn(small: Dataset) -> None:
    """with_payload=False is a third path beside layer and raw: which goes first rotates; recall stays the layer's."""
    eng = PayloadFreeEngine(small)
    n_single = 6
    r = measure(eng, small, Truth.of(small, 10), {}, n_single=n_single)
    turns = ("LBR", "BRL", "RLB")
    warm = "LBR" + "LBR" * WARMUP_SINGLE
    batch = "".join(turns[i % 3] for i in range(REPEATS))
    single = "".join(turns[i % 3] for i in range(n_single))
    assert "".join(eng.log) == warm + batch + single
    assert r["recall@10"] == pytest.approx(0.7) and r["single"]["recall@10"] == pytest.approx(0.5)
    assert r["batch"]["no_payload_qps"] > 0 and r["batch"]["no_payload_overhead_ratio"] > 0
    assert r["single"]["no_payload"]["p50_ms"] > 0
    assert {"no_payload_overhead_us_p50", "no_payload_overhead_us_mean"} <= set(r["single"])


def test_faiss_engine_times_the_payload_free_search(tmp_path: Path) -> None:
    """A real store: the payload-free row sits beside the layer and raw rows, and the report shows it."""
    from benchmarks.report import markdown

    ds = clustered(n=500, d=16, nq=20, seed=2)
    eng = FaissEngine(BuildConfig("faiss-flat", "faiss", "flat"), tmp_path / "c", ds.dim, ds.metric)
    eng.build(ds.point_ids(), ds.xb, [{"t": str(i)} for i in range(len(ds.xb))])
    try:
        assert eng.open_raw()
        r = measure(eng, ds, Truth.of(ds, 10), {}, n_single=10)
        bare = eng.no_payload_search(ds.xq[:2], 10, {})
    finally:
        eng.close()
    assert all(h.payload == {} for hits in bare for h in hits)
    over = r["single"]["no_payload_overhead_us_p50"]
    assert r["single"]["no_payload"]["p50_ms"] > 0 and np.isfinite(over)
    results = {
        "run": {"date": "d", "cpu": "c", "cores": 2, "threads": 1, "load_average": [0.0], "versions": {}},
        "dataset": {"name": "t", "n": 500, "dim": 16, "nq": 20, "metric": ds.metric, "ground_truth_s": 0.0},
        "configs": [{"label": "faiss-flat", "build": eng.timings, "results": [r]}],
    }
    lines = markdown(results).splitlines()
    line = next(ln for ln in lines if ln.startswith("| faiss-flat | — |"))
    header = next(ln for ln in lines if "no payload p50" in ln and ln.startswith("|"))  # the table's own header
    names = [c.strip() for c in header.strip("|").split("|")]
    cells = dict(zip(names, [c.strip() for c in line.strip("|").split("|")], strict=True))
    assert cells["no payload p50"] == f"{r['single']['no_payload']['p50_ms']:.3f}"
    assert cells["+µs no payload"] == f"{over:.0f}"
