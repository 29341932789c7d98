"""Benchmark arithmetic on hand-made tables."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.metrics import knn_intersection_measure, pareto_front, percentiles, recall_at


def test_recall_hand_made() -> None:
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[1, 9, 3, -1], [8, 7, 6, 5]])
    assert knn_intersection_measure(found, truth) == pytest.approx((2 + 4) / 8)
    r = recall_at(found, truth, ks=(1, 4, 10))
    assert r == {"recall@1": pytest.approx(0.5), "recall@4": pytest.approx(0.75)}
    with pytest.raises(ValueError):
        knn_intersection_measure(found[:1], truth)


def test_percentiles_hand_made() -> None:
    samples = [0.001 * i for i in range(1, 101)]  # 1..100 ms
    p = percentiles(samples)
    assert p["p50_ms"] == pytest.approx(50.5)
    assert p["p95_ms"] == pytest.approx(95.05)
    assert p["p99_ms"] == pytest.approx(99.01)
    with pytest.raises(ValueError):
        percentiles([])


def test_pareto_front() -> None:
    pts = [(0.5, 100.0), (0.9, 50.0), (0.8, 40.0), (1.0, 10.0), (0.6, 120.0)]
    assert pareto_front(pts) == [4, 1, 3]
