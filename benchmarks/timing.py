"""The harness's clocks: one call timed, paths rotated so none always goes first, per-repeat p50s of single queries.

Every p50 here is ``metrics.percentiles`` of the samples (the one percentile function), in µs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from benchmarks.metrics import percentiles

T = TypeVar("T")
Search = Callable[[np.ndarray], Any]


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """(seconds, result) of one call, time.perf_counter around it."""
    t0 = time.perf_counter()
    res = fn()
    return time.perf_counter() - t0, res


def rotated(items: Sequence[T], turn: int) -> list[T]:
    """items started at position turn (mod len): with two, (a, b) then (b, a); with three, abc, bca, cab."""
    s = turn % max(len(items), 1)
    return [*items[s:], *items[:s]]


def p50_us(samples_s: Sequence[float]) -> float:
    """The median of samples in seconds, in µs."""
    return percentiles(samples_s, (50,))["p50_ms"] * 1e3


def block_p50s(fns: Sequence[Search], queries: np.ndarray, repeats: int, warmup: int) -> list[list[float]]:
    """Per function, the p50 (µs) of each repeat over single queries.

    Timed in blocks (every query through one function, then through the next; which goes first rotates per
    repeat), as ann-benchmarks runs one algorithm at a time: interleaving every query made two index copies
    compete for the CPU cache and inflated both.
    """
    for q in queries[:warmup]:
        for f in fns:
            f(q[None, :])
    out: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        for i in rotated(range(len(fns)), r):
            f, ts = fns[i], []
            for q in queries:
                q1 = q[None, :]
                t0 = time.perf_counter()
                f(q1)
                ts.append(time.perf_counter() - t0)
            out[i].append(p50_us(ts))
    return out


def single_p50s(f: Search, queries: np.ndarray, repeats: int, warmup: int) -> tuple[list[float], list[Any]]:
    """Per repeat, the p50 (µs) of f over single queries; and the results of the last repeat."""
    for q in queries[:warmup]:
        f(q[None, :])
    p50s: list[float] = []
    res: list[Any] = []
    for _ in range(repeats):
        ts, res = [], []
        for q in queries:
            q1 = q[None, :]
            t0 = time.perf_counter()
            out = f(q1)
            ts.append(time.perf_counter() - t0)
            res.append(out)
        p50s.append(p50_us(ts))
    return p50s, res
