"""FAISS kinds and their parameters: build parameters (fixed at creation), query defaults, the query
parameters each kind uses, the sizing rules (nlist, pq_m), IVF training and the ids an index holds. Plain data
and functions over faiss objects; ``faiss_store`` uses them."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from retrieval.errors import InvalidInputError, UnknownKindError
from retrieval.settings import FaissSettings

FAISS_KINDS = ("flat", "ivf", "ivfpq", "hnsw")
MIN_POINTS_PER_LIST = 39  # faiss k-means asks for at least 39 training points per centroid
MAX_POINTS_PER_LIST = 256  # and samples down to 256 per centroid


@dataclass(frozen=True)
class FaissBuildParams:
    """Build parameters, fixed when the store is created (recorded in the manifest)."""

    kind: str
    nlist: int | None = None  # ivf/ivfpq; None → default_nlist(N) at training time
    pq_m: int | None = None  # ivfpq; None → default_pq_m(dim) when the store is created
    pq_nbits: int = 8
    hnsw_m: int = 32
    ef_construction: int = 100

    def __post_init__(self) -> None:
        if self.kind not in FAISS_KINDS:
            raise UnknownKindError(f"unknown FAISS index kind {self.kind!r}: use one of {list(FAISS_KINDS)}")
        if self.nlist is not None and self.nlist < 1:
            raise InvalidInputError("nlist must be ≥ 1")

    @classmethod
    def from_settings(cls, kind: str, s: FaissSettings, **overrides: Any) -> FaissBuildParams:
        base = cls(
            kind=kind,
            nlist=s.ivf_nlist,
            pq_m=s.pq_m,
            pq_nbits=s.pq_nbits,
            hnsw_m=s.hnsw_m,
            ef_construction=s.hnsw_ef_construction,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def nlist_for(self, n: int) -> int:
        """The number of IVF lists for n points (the fixed nlist, or the default rule), at most n."""
        return max(1, min(self.nlist or default_nlist(n), n))

    def max_train(self, nlist: int) -> int:
        """How many points a full training run samples."""
        return max(MAX_POINTS_PER_LIST * nlist, MAX_POINTS_PER_LIST * 2**self.pq_nbits if self.kind == "ivfpq" else 0)

    def min_train_points(self, n: int | None = None) -> int:
        """How many points training needs (IVF: nlist; PQ: also 2^nbits)."""
        if self.kind not in ("ivf", "ivfpq"):
            return 0
        need = self.nlist or 1
        if self.kind == "ivfpq":
            need = max(need, 2**self.pq_nbits)
        return need


@dataclass(frozen=True)
class FaissQueryDefaults:
    """Query parameters used when a search does not pass its own."""

    nprobe: int = 48
    ef_search: int = 64
    rerank: int = 10  # ivfpq only
    exact_filter_limit: int = 4096  # a filter matching at most this many points is answered exactly
    hnsw_compact_fraction: float = 0.2  # rebuild the graph when this fraction of its nodes is deleted/replaced
    flat_resident: bool = True  # flat scans a private anonymous copy of the vectors, not the file map
    compact_garbage_fraction: float = 0.25  # build() compacts the point store above this share of garbage rows

    @classmethod
    def from_settings(cls, s: FaissSettings) -> FaissQueryDefaults:
        keys = ("exact_filter_limit", "hnsw_compact_fraction", "flat_resident", "compact_garbage_fraction")
        extra = {k: getattr(s, k) for k in keys if getattr(s, k, None) is not None}
        return cls(nprobe=s.ivf_nprobe, ef_search=s.hnsw_ef_search, rerank=s.rerank_factor, **extra)


def default_nlist(n: int) -> int:
    """4·√N lists, but no more than N/39 so that every list gets 39 training points; at least 1."""
    return max(1, min(int(round(4 * math.sqrt(max(n, 1)))), n // MIN_POINTS_PER_LIST))


QUERY_PARAMS: dict[str, frozenset[str]] = {  # what each kind's search uses (re-rank: exact rescoring of k×factor)
    "flat": frozenset({"exact"}),
    "ivf": frozenset({"nprobe", "rerank", "exact"}),
    "ivfpq": frozenset({"nprobe", "rerank", "exact"}),
    "hnsw": frozenset({"hnsw_ef", "rerank", "exact"}),
}


@functools.cache
def faiss_module() -> Any:
    """faiss, imported on first use (a cached lookup afterwards: this sits on every query's path)."""
    import faiss

    return faiss


def default_pq_m(dim: int) -> int:
    """Sub-quantizers of 8 dimensions each (384-d → 48 bytes a vector), or the nearest divisor of dim below."""
    return next(m for m in range(max(dim // 8, 1), 0, -1) if dim % m == 0)


def remove_ids(index: Any, fids: np.ndarray) -> None:
    """Remove fids from an IVF index (its hashtable direct map takes only an IDSelectorArray)."""
    f = faiss_module()
    arr = np.ascontiguousarray(fids, dtype=np.int64)
    index.remove_ids(f.IDSelectorArray(len(arr), f.swig_ptr(arr)))


def repair_hint(name: str) -> str:
    """How to repair a damaged FAISS collection."""
    return f"re-create it: `simlookup ingest CORPUS --name {name}` (or delete the folder and ingest again)"


def train_ivf(
    b: FaissBuildParams, dim: int, faiss_metric: int, live: np.ndarray, vectors_of: Callable[[np.ndarray], np.ndarray]
) -> tuple[Any, int, int]:
    """An empty trained IVF / IVF-PQ index for the live points: (index, nlist, points trained on). Trains on at
    most ``max_train`` of them (a seeded sample), with a hashtable direct map (remove_ids in O(removed))."""
    f = faiss_module()
    n = len(live)
    nlist = b.nlist_for(n)
    quantizer = f.IndexFlat(dim, faiss_metric)
    if b.kind == "ivf":
        index = f.IndexIVFFlat(quantizer, dim, nlist, faiss_metric)
    else:
        index = f.IndexIVFPQ(quantizer, dim, nlist, b.pq_m, b.pq_nbits, faiss_metric)
    max_train = b.max_train(nlist)
    sample = live if n <= max_train else np.sort(np.random.default_rng(0).choice(live, max_train, False))
    # fewer than 39 points per list only happens with a fixed nlist or tiny data: train without the warning
    index.cp.min_points_per_centroid = max(1, min(MIN_POINTS_PER_LIST, len(sample) // nlist))
    if b.kind == "ivfpq":
        index.pq.cp.min_points_per_centroid = max(1, min(MIN_POINTS_PER_LIST, len(sample) // 2**b.pq_nbits))
    index.train(np.ascontiguousarray(vectors_of(sample)))
    index.set_direct_map_type(f.DirectMap.Hashtable)
    return index, nlist, len(sample)


def index_ids(index: Any, kind: str) -> np.ndarray:
    """Every id an hnsw (IndexIDMap) or IVF index holds."""
    f = faiss_module()
    if kind == "hnsw":
        return np.asarray(f.vector_to_array(index.id_map), dtype=np.int64)
    invlists = index.invlists
    parts = [
        f.rev_swig_ptr(invlists.get_ids(lst), invlists.list_size(lst)).copy()
        for lst in range(invlists.nlist)
        if invlists.list_size(lst)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
