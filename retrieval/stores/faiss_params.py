"""FAISS kinds and their parameters: build parameters (fixed at creation), query defaults, the query
parameters each kind uses, the sizing rules (nlist, pq_m), training and the ids an index holds. Plain data
and functions over faiss objects; ``faiss_store`` uses them.

The memory tiers: ``flat`` / ``ivf`` / ``hnsw`` search float32 vectors (4·dim bytes each), ``ivf_sq8`` and
``hnsw_sq8`` 8-bit scalar-quantized codes (dim bytes each, faiss ``QT_8bit``: one min/max range per dimension,
spanning every point trained on; ``faiss_codes`` holds out what a later write adds outside them), ``ivfpq``
product-quantized codes (pq_m bytes each). Exact re-rank reads the candidates' float rows on demand from the
vector file (``VectorFile.read_rows``, pread: nothing stays resident but the page cache), so the quantized kinds
never need the float vectors in RAM."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from retrieval.errors import InvalidInputError, UnknownKindError
from retrieval.settings import FaissSettings

FAISS_KINDS = ("flat", "ivf", "ivfpq", "hnsw", "ivf_sq8", "hnsw_sq8")
DEFAULT_KINDS = ("flat", "ivf", "ivfpq", "hnsw")  # what an ingest builds unless told (the memory tiers on request)
IVF_KINDS = ("ivf", "ivfpq", "ivf_sq8")  # an inverted file over a trained k-means quantizer (nprobe)
HNSW_KINDS = ("hnsw", "hnsw_sq8")  # a graph (efSearch); deletions are tombstones until the graph is rebuilt
SQ8_KINDS = ("ivf_sq8", "hnsw_sq8")  # 8-bit scalar-quantized codes; re-rank on when FaissSettings.sq8_rerank
TRAINED_KINDS = (*IVF_KINDS, "hnsw_sq8")  # kinds that hold nothing until trained (build(), or the first search)
SQ_MAX_TRAIN = 65536  # hnsw_sq8 learns its per-dimension ranges from at most this many points
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

    def max_train(self, nlist: int | None) -> int:
        """How many points a full training run samples."""
        if self.kind == "hnsw_sq8":
            return SQ_MAX_TRAIN
        nlist = nlist or 1
        return max(MAX_POINTS_PER_LIST * nlist, MAX_POINTS_PER_LIST * 2**self.pq_nbits if self.kind == "ivfpq" else 0)

    def min_train_points(self, n: int | None = None) -> int:
        """How many points training needs (IVF: nlist; PQ: also 2^nbits; SQ8 ranges: one)."""
        if self.kind not in TRAINED_KINDS:
            return 0
        need = 1 if self.kind == "hnsw_sq8" else self.nlist or 1
        if self.kind == "ivfpq":
            need = max(need, 2**self.pq_nbits)
        return need

    def retrain_due(self, nlist: int | None, trained_on: int, n: int) -> bool:
        """Whether an index trained (nlist lists, on trained_on points) is stale for n points: IVF when n implies
        another nlist or a full training run would sample more points now; hnsw_sq8 (whose retraining rebuilds
        the graph) only once a full run would sample more than twice the points its ranges were learnt from."""
        if self.kind == "hnsw_sq8":
            return 2 * trained_on < min(n, SQ_MAX_TRAIN)
        return (self.nlist is None and nlist != self.nlist_for(n)) or trained_on < min(
            n, self.max_train(self.nlist_for(n))
        )


@dataclass(frozen=True)
class FaissQueryDefaults:
    """Query parameters used when a search does not pass its own."""

    nprobe: int = 48
    ef_search: int = 64
    rerank: int = 10  # ivfpq; the sq8 kinds too when sq8_rerank
    sq8_rerank: bool = False  # ivf_sq8 / hnsw_sq8 re-rank k×rerank candidates from the vector file by default
    exact_filter_limit: int = 4096  # a filter matching at most this many points is answered exactly
    exact_filter_cost: float = 2.0  # IVF kinds: or at most this many times the rows the index would read
    hnsw_compact_fraction: float = 0.2  # rebuild the graph when this fraction of its nodes is deleted/replaced
    flat_resident: bool = True  # flat scans a private anonymous copy of the vectors, not the file map
    compact_garbage_fraction: float = 0.25  # build() compacts the point store above this share of garbage rows

    @classmethod
    def from_settings(cls, s: FaissSettings) -> FaissQueryDefaults:
        keys = (
            "exact_filter_limit",
            "exact_filter_cost",
            "hnsw_compact_fraction",
            "flat_resident",
            "compact_garbage_fraction",
            "sq8_rerank",
        )
        extra = {k: getattr(s, k) for k in keys if getattr(s, k, None) is not None}
        return cls(nprobe=s.ivf_nprobe, ef_search=s.hnsw_ef_search, rerank=s.rerank_factor, **extra)

    def rerank_for(self, kind: str) -> int:
        """The re-rank factor a search of ``kind`` uses when it passes none (0: off)."""
        return self.rerank if kind == "ivfpq" or (kind in SQ8_KINDS and self.sq8_rerank) else 0


def default_nlist(n: int) -> int:
    """4·√N lists, but no more than N/39 so that every list gets 39 training points; at least 1."""
    return max(1, min(int(round(4 * math.sqrt(max(n, 1)))), n // MIN_POINTS_PER_LIST))


QUERY_PARAMS: dict[str, frozenset[str]] = {  # what each kind's search uses (re-rank: exact rescoring of k×factor)
    "flat": frozenset({"exact"}),
    "ivf": frozenset({"nprobe", "rerank", "exact"}),
    "ivfpq": frozenset({"nprobe", "rerank", "exact"}),
    "hnsw": frozenset({"hnsw_ef", "rerank", "exact"}),
    "ivf_sq8": frozenset({"nprobe", "rerank", "exact"}),
    "hnsw_sq8": frozenset({"hnsw_ef", "rerank", "exact"}),
}


# Exhaustive distances (flat search, brute force, exact re-rank, ground truth) switch from faiss' own loop to BLAS
# when queries × dim reaches this. faiss 1.15 moved it from 20 queries to nq·d 128,000 (333 queries at 384-d),
# tuned for many OpenMP threads; on 2 cores a 200-query flat search then took 7.5 s instead of 0.54 s (faiss PR
# #5109 measures the same regression at few threads). 20 queries at 384-d, faiss' long-standing crossover.
BLAS_WORK = 20 * 384


@functools.cache
def faiss_module() -> Any:
    """faiss, imported on first use (a cached lookup afterwards: this sits on every query's path)."""
    import faiss

    faiss.cvar.distance_compute_blas_threshold = BLAS_WORK
    return faiss


def faiss_search_params(family: str, value: int, sel: Any = None) -> Any:
    """faiss search parameters: ("ivf", nprobe), ("hnsw", efSearch) or ("flat", 0), with an optional selector."""
    f = faiss_module()
    if family == "ivf":
        sp = f.SearchParametersIVF(nprobe=value)
    elif family == "hnsw":
        sp = f.SearchParametersHNSW(efSearch=value)
    else:
        sp = f.SearchParameters()
    if sel is not None:
        sp.sel = sel
    return sp


def filter_selector(allowed: np.ndarray, size: int) -> tuple[Any, Any]:
    """(selector, buffer to keep alive) for a filter's matches among the fids below ``size``."""
    f = faiss_module()
    if len(allowed) * 32 > size:  # many matches: a bitmap (N/8 bytes) beats a hash set of the matches
        bits = np.zeros(size, dtype=bool)
        bits[allowed] = True
        packed = np.packbits(bits, bitorder="little")
        return f.IDSelectorBitmap(size, f.swig_ptr(packed)), packed
    return f.IDSelectorBatch(allowed), None


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


def new_hnsw(b: FaissBuildParams, dim: int, faiss_metric: int) -> Any:
    """An empty float32 HNSW graph (``hnsw``) under an id map: it needs no training."""
    f = faiss_module()
    inner = f.IndexHNSWFlat(dim, b.hnsw_m, faiss_metric)
    inner.hnsw.efConstruction = b.ef_construction
    return f.IndexIDMap(inner)


def train_index(
    b: FaissBuildParams, dim: int, faiss_metric: int, live: np.ndarray, vectors_of: Callable[[np.ndarray], np.ndarray]
) -> tuple[Any, int | None, int]:
    """An empty trained index of a TRAINED_KINDS kind for the live points: (index, nlist or None, points trained
    on). Trains on at most ``max_train`` of them (a seeded sample); the 8-bit kinds' ranges span every live point.
    IVF kinds get a hashtable direct map (remove_ids in O(removed)); hnsw_sq8 is an IndexHNSWSQ (8-bit codes)
    under an id map."""
    f = faiss_module()
    n = len(live)
    nlist = b.nlist_for(n) if b.kind in IVF_KINDS else None
    qt = f.ScalarQuantizer.QT_8bit
    if b.kind == "hnsw_sq8":
        inner = f.IndexHNSWSQ(dim, qt, b.hnsw_m, faiss_metric)
        inner.hnsw.efConstruction = b.ef_construction
        index = f.IndexIDMap(inner)
    else:
        quantizer = f.IndexFlat(dim, faiss_metric)
        if b.kind == "ivf":
            index = f.IndexIVFFlat(quantizer, dim, nlist, faiss_metric)
        elif b.kind == "ivf_sq8":  # codes of the vectors, not of their residuals: ranges that no list changes
            index = f.IndexIVFScalarQuantizer(quantizer, dim, nlist, qt, faiss_metric, False)
        else:
            index = f.IndexIVFPQ(quantizer, dim, nlist, b.pq_m, b.pq_nbits, faiss_metric)
    max_train = b.max_train(nlist)
    sample = live if n <= max_train else np.sort(np.random.default_rng(0).choice(live, max_train, False))
    if nlist is not None:
        # fewer than 39 points per list only happens with a fixed nlist or tiny data: train without the warning
        index.cp.min_points_per_centroid = max(1, min(MIN_POINTS_PER_LIST, len(sample) // nlist))
    if b.kind == "ivfpq":
        index.pq.cp.min_points_per_centroid = max(1, min(MIN_POINTS_PER_LIST, len(sample) // 2**b.pq_nbits))
    train = np.ascontiguousarray(vectors_of(sample))
    index.train(train)
    if b.kind in SQ8_KINDS:  # 8-bit ranges over every point, not the sample: training clips none of them
        set_ranges(index, b.kind, *value_ranges(live, vectors_of, train))
    if nlist is not None:
        index.set_direct_map_type(f.DirectMap.Hashtable)
    return index, nlist, len(sample)


def scalar_quantizer(index: Any, kind: str) -> Any:
    """The ScalarQuantizer of an ivf_sq8 / hnsw_sq8 index (None for other kinds)."""
    f = faiss_module()
    if kind == "ivf_sq8":
        return index.sq
    if kind == "hnsw_sq8":
        return f.downcast_index(f.downcast_index(index.index).storage).sq
    return None


def value_ranges(
    fids: np.ndarray, vectors_of: Callable[[np.ndarray], np.ndarray], first: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension (min, max) over the vectors of ``fids`` (read a chunk at a time), or over ``first`` when it
    already holds them all."""
    if first is not None and len(first) == len(fids):
        return first.min(axis=0), first.max(axis=0)
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    for i in range(0, len(fids), 65536):
        v = vectors_of(fids[i : i + 65536])
        lo = v.min(axis=0) if lo is None else np.minimum(lo, v.min(axis=0))
        hi = v.max(axis=0) if hi is None else np.maximum(hi, v.max(axis=0))
    assert lo is not None and hi is not None
    return lo, hi


def set_ranges(index: Any, kind: str, lo: np.ndarray, hi: np.ndarray) -> None:
    """Make an 8-bit index code the values in [lo, hi] per dimension (before anything is added)."""
    trained = np.concatenate([lo, hi - lo]).astype(np.float32)  # faiss RS_minmax: vmin, then vdiff
    faiss_module().copy_array_to_vector(trained, scalar_quantizer(index, kind).trained)


def index_ids(index: Any, kind: str) -> np.ndarray:
    """Every id an HNSW (IndexIDMap) or IVF index holds."""
    f = faiss_module()
    if kind in HNSW_KINDS:
        return np.asarray(f.vector_to_array(index.id_map), dtype=np.int64)
    parts = [ids.copy() for _, ids in ivf_lists(index)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def ivf_lists(index: Any) -> Iterator[tuple[int, np.ndarray]]:
    """(list number, the ids it holds) of every non-empty list of an IVF index; the ids are a view of faiss'
    memory, valid until the index changes."""
    f = faiss_module()
    invlists = index.invlists
    for lst in range(invlists.nlist):
        n = invlists.list_size(lst)
        if n:
            yield lst, f.rev_swig_ptr(invlists.get_ids(lst), n)


def exact_break_even(index: Any, dim: int, nprobe: int, k: int, rerank: int, factor: float) -> int:
    """The match count up to which an exact scan over a filter's matches reads at most ``factor`` times what an IVF
    ``index`` reads for one query: its centroids, ``nprobe`` average lists of codes (counted as full float32 rows by
    their bytes) and the ``k × rerank`` rows a re-rank gathers. A filter correlated with the data (whole clusters)
    leaves the probed lists with a few matches at their edge, and the index answers k hits that are not the
    nearest; at or below this count the exact answer costs no more than a few index searches."""
    nlist = int(getattr(index, "nlist", 0) or 0)
    if nlist <= 0 or factor <= 0:
        return 0
    row = 4 * dim
    listed = min(nprobe, nlist) * index.ntotal / nlist * int(getattr(index, "code_size", row)) / row
    return int(factor * (nlist + listed + (k * rerank if rerank > 1 else 0)))

