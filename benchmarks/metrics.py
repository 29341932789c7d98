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


def distances(xq: np.ndarray, xb: np.ndarray, pos: np.ndarray, metric: str, budget: int = 1 << 24) -> np.ndarray:
    """Exact distance of each found position to its query (smaller is nearer; inf where pos is -1).

    cosine: 1 - cos (vectors normalised here), dot: -dot, l2: Euclidean. Computed by the harness from the
    vectors, so every engine's result list is judged on the same scale whatever score it reports.
    """
    pos = np.asarray(pos)
    out = np.full(pos.shape, np.inf, dtype=np.float64)
    chunk = max(1, budget // max(pos.shape[1] * xb.shape[1], 1))  # rows per step: about `budget` floats at once
    if metric == "cosine":
        xq = xq / np.linalg.norm(xq, axis=1, keepdims=True)
    for s in range(0, len(pos), chunk):
        p = pos[s : s + chunk]
        valid = p >= 0
        v = xb[np.where(valid, p, 0)].astype(np.float64)  # (c, k, d)
        if metric == "cosine":
            v /= np.maximum(np.linalg.norm(v, axis=2, keepdims=True), 1e-30)
        q = xq[s : s + chunk].astype(np.float64)[:, None, :]
        if metric == "l2":
            d = np.sqrt(np.maximum(((v - q) ** 2).sum(2), 0))
        elif metric == "cosine":
            d = 1.0 - (v * q).sum(2)
        else:
            d = -(v * q).sum(2)
        out[s : s + chunk] = np.where(valid, d, np.inf)
    return out


def recall_with_ties(found_dist: np.ndarray, true_dist: np.ndarray, k: int, epsilon: float = 1e-3) -> float:
    """ann-benchmarks' knn recall: share of the first k found whose distance is within the k-th true distance + eps.

    A neighbour tied with the k-th true one counts as found, so equal-distance points never decide a recall.
    """
    found_dist = np.asarray(found_dist)[:, :k]
    true_dist = np.asarray(true_dist)
    if found_dist.shape[0] != true_dist.shape[0]:
        raise ValueError(f"{found_dist.shape[0]} result rows but {true_dist.shape[0]} ground-truth rows")
    if true_dist.shape[1] < k:
        raise ValueError(f"ground truth has {true_dist.shape[1]} columns, fewer than k={k}")
    threshold = true_dist[:, k - 1 : k] + epsilon
    return float((found_dist <= threshold).sum() / (k * len(true_dist)))


def knn_recalls(
    found: np.ndarray,
    truth_idx: np.ndarray,
    xq: np.ndarray,
    xb: np.ndarray,
    metric: str,
    ks: Sequence[int] = (10,),
    true_dist: np.ndarray | None = None,
) -> dict[str, float]:
    """recall@k (ties within 1e-3 of the k-th true distance count as found) and id_recall@k (the plain id
    overlap), for each k both arrays are wide enough for. found / truth_idx: (n, ≥k) base positions, -1 = none;
    true_dist: the truth's distances when the caller has them already (else computed here)."""
    found = np.asarray(found)
    truth_idx = np.asarray(truth_idx)
    fd = distances(xq, xb, found, metric)
    td = distances(xq, xb, truth_idx, metric) if true_dist is None else np.asarray(true_dist)
    out: dict[str, float] = {}
    for k in ks:
        if found.shape[1] >= k and td.shape[1] >= k:
            out[f"recall@{k}"] = recall_with_ties(fd, td, k)
            out[f"id_recall@{k}"] = knn_intersection_measure(found[:, :k], truth_idx[:, :k])
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
