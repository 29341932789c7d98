"""Plain functions over numpy arrays: recall against exact ground truth, latency percentiles, Pareto fronts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def knn_intersection_measure(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the true top-k ids present in the found top-k (faiss contrib's measure); -1 = no result."""
    found = np.asarray(found)
    truth = np.asarray(truth)
    if found.shape[0] != truth.shape[0]:
        raise ValueError(f"{found.shape[0]} result rows but {truth.shape[0]} ground-truth rows")
    k = truth.shape[1]
    if k == 0:
        raise ValueError("ground truth has no columns")
    hits = 0
    for f, t in zip(found, truth, strict=True):
        hits += len(set(f[:k][f[:k] >= 0].tolist()) & set(t.tolist()))
    return hits / (k * len(truth))


def recall_at(found: np.ndarray, truth: np.ndarray, ks: Sequence[int] = (1, 10, 100)) -> dict[str, float]:
    """recall@k for each k that both arrays are wide enough for."""
    out = {}
    for k in ks:
        if found.shape[1] >= k and truth.shape[1] >= k:
            out[f"recall@{k}"] = knn_intersection_measure(found[:, :k], truth[:, :k])
    return out


def percentiles(samples_s: Sequence[float], ps: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    """Latency percentiles in milliseconds from samples in seconds (linear interpolation)."""
    arr = np.asarray(samples_s, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no latency samples")
    return {f"p{int(p) if float(p).is_integer() else p}_ms": float(np.percentile(arr, p) * 1e3) for p in ps}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (recall higher, qps higher)."""
    idx = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front: list[int] = []
    best_qps = -np.inf
    for i in idx:
        if points[i][1] > best_qps:
            front.append(i)
            best_qps = points[i][1]
    return sorted(front, key=lambda i: points[i][0])
