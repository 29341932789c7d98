"""Fusion of the dense and keyword legs into one ranking: the one place hybrid scores are computed, for every engine.

- ``rrf`` (default): reciprocal rank fusion, score(d) = Σ_leg w_leg / (k + rank_leg(d)), rank from 1, k = 60
  (Cormack et al. 2009); a leg that did not return d adds nothing. Only the order of each leg counts.
- ``dbsf``: distribution-based score fusion as Qdrant computes it: each leg's scores are mapped by
  (s - (μ - 3σ)) / (6σ) with μ and σ the mean and sample standard deviation of that leg's returned scores (one
  hit, or all scores equal: 0.5; a leg ranked ascending, such as L2 distances, is flipped), then summed with the
  weights.
- The weighted form: ``alpha`` in [0, 1] is the dense leg's share, 1 - alpha the keyword leg's, as weights
  2·alpha and 2·(1 - alpha) (0.5: both 1, plain RRF / DBSF; 1: dense order only; 0: keyword order only).

Ties: scores within ``TIE_RTOL`` (1e-6, relative) of a run's first score are tied, on every leg and engine (FAISS
scores in float64, Qdrant in float32). Each leg is fetched deep enough to hold every document tied with its k-th
hit (``top_with_ties``) and its ties put in id order (``canonical``) before the cut; fused ties break by the best
rank a hit had in any leg, then the dense leg first, then the id, so every engine that scores alike returns the same
fused list.
Qdrant's native ``FusionQuery`` is not used: its RRF scores 1 / (k + rank - 1) with weights applied to the rank, and
it orders ties its own way, so simlookup fuses the two legs itself on Qdrant too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from retrieval.errors import InvalidInputError
from retrieval.stores.base import Hit

FusionMethod = Literal["rrf", "dbsf"]
FUSION_METHODS: tuple[FusionMethod, ...] = ("rrf", "dbsf")
RRF_K = 60


@dataclass(frozen=True)
class Fusion:
    """How a hybrid search fuses its legs: the method, the dense leg's share ``alpha`` and RRF's ``k``."""

    method: FusionMethod = "rrf"
    alpha: float = 0.5
    rrf_k: int = RRF_K

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise InvalidInputError(f"unknown fusion {self.method!r}: use one of {list(FUSION_METHODS)}")
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or not 0 <= a <= 1:
            raise InvalidInputError(f"alpha (the dense leg's share of a hybrid score) must be in [0, 1], got {a!r}")
        if isinstance(self.rrf_k, bool) or not isinstance(self.rrf_k, int) or self.rrf_k < 1:
            raise InvalidInputError(f"the RRF constant k must be a positive integer, got {self.rrf_k!r}")

    @property
    def weights(self) -> tuple[float, float]:
        """(dense, keyword) weights: 2·alpha and 2·(1 - alpha)."""
        return 2.0 * self.alpha, 2.0 * (1.0 - self.alpha)


TIE_RTOL = 1e-6  # scores this close (relative) are a tie: engines compute them in float32 or float64
TIE_MARGIN = 16  # a leg is first fetched this many deeper than asked, then deeper while its cut falls in a tie


def tie_groups(hits: Sequence[Hit]) -> list[list[Hit]]:
    """A ranked list's runs of tied scores: a run holds every following hit within ``TIE_RTOL`` (relative) of its
    first hit's score. The one tie rule of every leg and engine."""
    out: list[list[Hit]] = []
    for h in hits:
        if out:
            lead = out[-1][0].score
            if abs(h.score - lead) <= TIE_RTOL * max(abs(lead), 1e-12):
                out[-1].append(h)
                continue
        out.append([h])
    return out


def canonical(hits: Sequence[Hit]) -> list[Hit]:
    """A leg's hits with every run of tied scores ordered by id: engines order ties each their own way (and differ
    in the last float32 digit), so the legs are made canonical before they are fused or returned."""
    return [h for group in tie_groups(hits) for h in sorted(group, key=lambda x: x.id)]


def cut_in_tie(hits: Sequence[Hit], k: int) -> bool:
    """Whether the last of these ranked hits ties the k-th one: a deeper fetch may hold more of that run."""
    if len(hits) <= k:
        return False
    groups = tie_groups(hits)
    seen = 0
    for group in groups:
        seen += len(group)
        if seen >= k:
            return group is groups[-1]
    return False


def top_with_ties(fetch: Callable[[int], list[Hit]], k: int, cap: int | None = None) -> list[Hit]:
    """The best k of a leg, alike on every engine: ``fetch(n)`` (the engine's best n, in its own tie order) is
    asked ``TIE_MARGIN`` deeper than k, then twice as deep while the last hit ties the k-th (every document of the
    run at the cut is fetched, up to ``cap`` hits), and the runs are put in id order before the cut. Engines that
    score alike therefore return the same k hits, whichever of the tied documents each found first."""
    limit = k + TIE_MARGIN if cap is None else max(min(k + TIE_MARGIN, cap), min(k, cap))
    while True:
        got = fetch(limit)
        if len(got) < limit or not cut_in_tie(got, k) or (cap is not None and limit >= cap):
            return canonical(got)[:k]
        limit = 2 * limit if cap is None else min(2 * limit, cap)


def rrf_scores(legs: Sequence[Sequence[Hit]], weights: Sequence[float], k: int = RRF_K) -> dict[str, float]:
    """Σ w / (k + rank) per id over the legs (rank from 1)."""
    out: dict[str, float] = {}
    for hits, w in zip(legs, weights, strict=True):
        for rank, h in enumerate(hits, start=1):
            out[h.id] = out.get(h.id, 0.0) + w / (k + rank)
    return out


def dbsf_normalize(scores: Sequence[float]) -> list[float]:
    """One leg's scores mapped through mean ± 3 sample standard deviations to about [0, 1] (Qdrant's DBSF)."""
    n = len(scores)
    if n < 2:
        return [0.5] * n
    mean = sum(scores) / n
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    lo, hi = mean - 3.0 * std, mean + 3.0 * std
    if hi == lo:
        return [0.5] * n
    out = [(s - lo) / (hi - lo) for s in scores]
    if scores[0] < scores[-1]:  # ranked ascending (a distance): smaller is better
        out = [1.0 - v for v in out]
    return out


def dbsf_scores(legs: Sequence[Sequence[Hit]], weights: Sequence[float]) -> dict[str, float]:
    """Σ w · normalised score per id over the legs."""
    out: dict[str, float] = {}
    for hits, w in zip(legs, weights, strict=True):
        for h, v in zip(hits, dbsf_normalize([h.score for h in hits]), strict=True):
            out[h.id] = out.get(h.id, 0.0) + w * v
    return out


def fuse(dense: Sequence[Hit], keyword: Sequence[Hit], fusion: Fusion, limit: int) -> list[Hit]:
    """The fused ranking of two legs (best first, at most ``limit`` hits); each hit keeps the payload of the first
    leg that returned it and gets its fused score."""
    legs = (canonical(dense), canonical(keyword))
    if fusion.method == "rrf":
        scores = rrf_scores(legs, fusion.weights, fusion.rrf_k)
    else:
        scores = dbsf_scores(legs, fusion.weights)
    first: dict[str, tuple[int, int, Hit]] = {}  # id -> (best rank, leg, hit)
    for leg, hits in enumerate(legs):
        for rank, h in enumerate(hits):
            seen = first.get(h.id)
            if seen is None:
                first[h.id] = (rank, leg, h)
            elif rank < seen[0]:
                first[h.id] = (rank, seen[1], seen[2])
    ranked = [Hit(i, float(scores[i]), first[i][2].payload) for i in sorted(first, key=lambda i: -scores[i])]
    out = [h for g in tie_groups(ranked) for h in sorted(g, key=lambda h: (first[h.id][0], first[h.id][1], h.id))]
    return out[:limit]
