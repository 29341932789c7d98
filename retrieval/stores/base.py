"""The store contract every backend keeps, and the base class that owns validation and batching.

Adapters implement the ``_``-prefixed hooks and only talk to their engine; the public methods here
check dimensions, NaN/inf, ids, payloads, filters and k once for every backend.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from retrieval.errors import DimensionMismatchError, InvalidInputError, StoreClosedError
from retrieval.filters import Filter
from retrieval.metric import Metric
from retrieval.settings import SearchLimits
from retrieval.stores.payloads import check_int64
from retrieval.stores.vector_checks import as_float32

Payload = dict[str, Any]


MAX_SQ_NORM = 1e30  # dot / l2 scores of vectors with norms up to 1e15 stay far inside float32
# built once (json.dumps with options builds one per call); sort_keys as the stores write: mixed key types fail here
_STRICT_JSON = json.JSONEncoder(allow_nan=False, sort_keys=True)


@dataclass(slots=True)
class Hit:
    """One search result (the caller's own: its payload is a copy)."""

    id: str
    score: float
    payload: Payload

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchParams:
    """Query-time parameters; build parameters are fixed when a store is created.

    nprobe: IVF lists to visit. hnsw_ef: HNSW candidate list (FAISS efSearch, Qdrant hnsw_ef).
    exact: brute force over stored vectors. rerank: fetch k×rerank candidates and rescore them exactly
    (None = the kind's default: 10 for FAISS ivfpq, off elsewhere; 0 or 1 = off).
    oversampling, rescore: a quantized Qdrant collection's search (k×oversampling candidates found on the quantized
    vectors, ≥ 1; rescored by the original vectors unless rescore is False, whose scores are the quantized ones).
    """

    nprobe: int | None = None
    hnsw_ef: int | None = None
    exact: bool = False
    rerank: int | None = None
    oversampling: float | None = None
    rescore: bool | None = None

    def __post_init__(self) -> None:
        for name in ("nprobe", "hnsw_ef", "rerank"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise InvalidInputError(f"search parameter {name} must be a non-negative integer, got {v!r}")
        o = self.oversampling
        if o is not None and (not isinstance(o, (int, float)) or isinstance(o, bool) or not 1 <= o < math.inf):
            raise InvalidInputError(f"search parameter oversampling must be a number >= 1, got {o!r}")
        if self.rescore is not None and not isinstance(self.rescore, bool):
            raise InvalidInputError(f"search parameter rescore must be true or false, got {self.rescore!r}")
        # their upper bounds are the settings' (SearchLimits), applied by VectorStore.search


_DEFAULT_PARAMS = SearchParams()  # frozen: one shared instance for calls that pass none
PARAM_OPTIONS = {
    "nprobe": "--nprobe",
    "hnsw_ef": "--ef",
    "rerank": "--rerank-factor",
    "exact": "--exact",
    "oversampling": "--oversampling",
    "rescore": "--no-rescore",
}


def with_defaults(params: SearchParams | None, defaults: SearchParams) -> SearchParams:
    """``params`` with the fields it leaves unset (None) taken from ``defaults``: explicit parameters win (rerank
    and oversampling both size a candidate list: either one given replaces the default oversampling)."""
    if params is None:
        return defaults
    return SearchParams(
        nprobe=params.nprobe if params.nprobe is not None else defaults.nprobe,
        hnsw_ef=params.hnsw_ef if params.hnsw_ef is not None else defaults.hnsw_ef,
        exact=params.exact,
        rerank=params.rerank if params.rerank is not None else defaults.rerank,
        oversampling=params.oversampling
        if params.oversampling is not None or params.rerank is not None
        else defaults.oversampling,
        rescore=params.rescore if params.rescore is not None else defaults.rescore,
    )


def used_params(params: SearchParams) -> list[str]:
    """The query parameters a SearchParams sets (a re-rank factor of 0 or 1 means off: not set)."""
    used = [n for n in ("nprobe", "hnsw_ef") if getattr(params, n) is not None]
    if params.rerank is not None and params.rerank > 1:
        used.append("rerank")
    if params.exact:
        used.append("exact")
    used.extend(n for n in ("oversampling", "rescore") if getattr(params, n) is not None)
    return used


class VectorStore(ABC):
    """A named set of points (string id, float32 vector, JSON payload) searchable by vector."""

    backend: ClassVar[str] = "abstract"
    # the caps on k and the query parameters: the defaults here, the settings' own through open_store
    limits: SearchLimits = SearchLimits()
    upsert_whole: ClassVar[bool] = False  # True: one _upsert call (one transaction) per upsert, whatever batch_size
    # opened read-only: upsert, delete and build raise StoreLockedError, and searching changes no file's content
    read_only: bool = False
    # the tuned default query setting (retrieval.tuning), set by the collection: fills what a search leaves unset
    tuned: SearchParams | None = None

    def __init__(self, name: str, dim: int, metric: Metric, fingerprint: str | None = None) -> None:
        if not isinstance(dim, int) or dim <= 0:
            raise InvalidInputError(f"dimension must be a positive integer, got {dim!r}")
        self.name = name
        self.dim = dim
        self.metric = Metric.parse(metric)
        self.fingerprint = fingerprint
        self._closed = False

    # ---- public API (validation + batching) ----
    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[Payload] | None = None,
        batch_size: int = 1024,
    ) -> int:
        """Insert or replace points; an existing id is replaced in place.

        Returns len(ids): the number of points now stored as given, whether inserted, replaced or unchanged
        (an empty upsert returns 0).
        """
        self._check_open()
        ids = self._check_ids(ids)
        if not ids:
            if np.asarray(vectors).size or (payloads is not None and len(payloads)):
                raise InvalidInputError("no ids but some vectors or payloads")
            return 0
        vecs = self.check_vectors(vectors, what="vector")
        if len(ids) != len(vecs):
            raise InvalidInputError(f"{len(ids)} ids but {len(vecs)} vectors")
        pls = self._check_payloads(payloads, len(ids))
        step = len(ids) if self.upsert_whole else max(1, batch_size)
        for i in range(0, len(ids), step):
            self._upsert(ids[i : i + step], vecs[i : i + step], pls[i : i + step])
        return len(ids)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete points by id; unknown ids are ignored. Returns how many were deleted."""
        self._check_open()
        return self._delete(self._check_ids(ids, unique=False))

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        filter: Filter | Mapping[str, Any] | None = None,
        params: SearchParams | None = None,
        with_payload: bool = True,
    ) -> list[list[Hit]]:
        """Nearest neighbours of each query (a (d,) or (n, d) array), best first, with payloads (with
        ``with_payload=False``: ids and scores only, each hit's payload an empty dict, as Qdrant's option).

        At most min(k, matching points) hits per query; k and the parameters are capped by ``self.limits``
        (SIMLOOKUP_LIMITS__*). A filter on a field that no point has matches nothing.
        """
        self._check_open()
        self.limits.check(k, params)
        if params is not None:
            self.check_params(params)
        q = self.check_vectors(queries, what="query")
        flt = None if filter is None else filter if isinstance(filter, Filter) else Filter.from_dict(filter)
        if self.tuned is not None:
            params = with_defaults(params, self.tuned)
        return self._search(q, k, flt if flt else None, params or _DEFAULT_PARAMS, with_payload)

    def query_params(self) -> frozenset[str] | None:
        """The query parameters this index uses, as ann-benchmarks' query arguments (None: not declared)."""
        return None

    def check_params(self, params: SearchParams) -> None:
        """Refuse a query parameter this index does not use (it would be silently ignored)."""
        accepts = self.query_params()
        if accepts is None:
            return
        bad = [n for n in used_params(params) if n not in accepts]
        if bad:
            what = getattr(self, "kind", self.backend)
            ok = ", ".join(f"{n} ({PARAM_OPTIONS[n]})" for n in sorted(accepts)) or "none"
            raise InvalidInputError(
                f"the {what} index does not use {', '.join(bad)}: the query parameters it accepts are {ok}"
            )

    def count(self) -> int:
        """Number of live points."""
        self._check_open()
        return self._count()

    def ids(self) -> set[str]:
        """Every live point id."""
        self._check_open()
        return self._ids()

    def has_field(self, path: str) -> bool | None:
        """Whether any live point's payload holds ``path`` (a key or dotted path, null values included); None
        where the backend cannot tell cheaply (the default; FAISS stores answer from their payload index)."""
        self._check_open()
        return None

    def fetch(self, ids: Sequence[str]) -> dict[str, tuple[np.ndarray | None, Payload]]:
        """Stored vector (None where the backend keeps none) and payload of each existing id."""
        self._check_open()
        return self._fetch(self._check_ids(ids, unique=False))

    def flush(self) -> None:
        """Make every write so far durable on disk (or on the server)."""
        self._check_open()
        self._flush()

    @abstractmethod
    def build(self) -> bool:
        """Finish indexing after a bulk load (train IVF/PQ, build Qdrant Edge HNSW). True if work was done."""

    def close(self) -> None:
        """Flush and release files, locks and connections. Idempotent."""
        if self._closed:
            return
        try:
            self._close()
        finally:
            self._closed = True

    def info(self) -> dict[str, Any]:
        """What this store is: backend, name, dim, metric, count and backend-specific details."""
        self._check_open()
        base = {
            "backend": self.backend,
            "name": self.name,
            "dim": self.dim,
            "metric": self.metric.value,
            "fingerprint": self.fingerprint,
            "count": self._count(),
        }
        base.update(self._info())
        return base

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- validation helpers ----
    def check_vectors(self, vectors: Any, what: str = "vector") -> np.ndarray:
        """(n, dim) float32, finite; normalised for cosine. Raises InvalidInputError otherwise."""
        if (
            type(vectors) is np.ndarray
            and vectors.dtype == np.float32
            and vectors.shape == (1, self.dim)
            and vectors.flags.c_contiguous
        ):  # the common single query: one float32 dot (no float64 copy: after a scan evicted the CPU caches
            # every numpy call costs tens of µs); NaN, inf, float32 overflow and underflow fail the range test
            # and take the float64 path below, which raises or handles them
            row = vectors[0]
            sq = float(np.vdot(row, row))  # vdot: no RuntimeWarning when the float32 sum overflows
            if 1e-30 <= sq <= MAX_SQ_NORM:  # far from float32's subnormal range, where the sum loses digits
                if self.metric is not Metric.COSINE or abs(math.sqrt(sq) - 1.0) <= 1e-5:
                    return vectors
                return (vectors / np.float32(math.sqrt(sq))).astype(np.float32, copy=False)
        arr = as_float32(vectors, what)  # refuses components beyond float32 (the cast would make them inf)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise InvalidInputError(f"{what}s must be a 1-D or 2-D array, got {arr.ndim} dimensions")
        if arr.shape[0] and arr.shape[1] != self.dim:
            raise DimensionMismatchError(
                f"{what} dimension {arr.shape[1]} does not match store {self.name!r} dimension {self.dim}"
            )
        # in float64: a finite float32 vector's squared norm may overflow float32 (1e20 components) or underflow it
        sq = np.einsum("ij,ij->i", arr, arr, dtype=np.float64)  # NaN and inf propagate
        if not np.isfinite(sq).all():
            bad = np.flatnonzero(~np.isfinite(sq))[:10].tolist()
            raise InvalidInputError(f"{what} rows {bad} contain NaN or inf")
        if self.metric is not Metric.COSINE and (sq > MAX_SQ_NORM).any():
            bad = np.flatnonzero(sq > MAX_SQ_NORM)[:10].tolist()
            raise InvalidInputError(
                f"{what} rows {bad} have a norm above 1e15: their {self.metric.value} scores would overflow float32"
            )
        norms = np.sqrt(sq)
        if self.metric is Metric.COSINE and arr.shape[0]:
            if (norms == 0).any():
                raise InvalidInputError(f"a zero {what} has no cosine similarity")
            if np.abs(norms - 1.0).max() > 1e-5:
                arr = (arr.astype(np.float64) / norms[:, None]).astype(np.float32)
        return np.ascontiguousarray(arr)

    @staticmethod
    def _check_ids(ids: Iterable[str], unique: bool = True) -> list[str]:
        if isinstance(ids, str):
            raise InvalidInputError("ids must be a list of strings, not one string")
        out = list(ids)
        for i in out:
            if not isinstance(i, str) or not i:
                raise InvalidInputError(f"point ids are non-empty strings, got {i!r}")
        if unique and len(set(out)) != len(out):
            seen: set[str] = set()
            dups = [i for i in out if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
            raise InvalidInputError(f"duplicate ids in one upsert: {dups[:5]}")
        return out

    @staticmethod
    def _check_payloads(payloads: Sequence[Payload] | None, n: int) -> list[Payload]:
        if payloads is None:
            return [{} for _ in range(n)]
        pls = list(payloads)
        if len(pls) != n:
            raise InvalidInputError(f"{n} points but {len(pls)} payloads")
        if all(type(p) is dict and all(type(k) is str for k in p) for p in pls):
            try:  # one C-level pass over the batch; the per-payload loop below runs only to name the error
                encoded = _STRICT_JSON.encode(pls)
            except (TypeError, ValueError):
                pass
            else:
                check_int64(pls, encoded)  # integers beyond 64 bits (see payloads.INT64)
                return pls
        for p in pls:
            if not isinstance(p, dict):
                raise InvalidInputError(f"a payload must be a dict, got {type(p).__name__}")
            bad = [k for k in p if not isinstance(k, str)]
            if bad:
                raise InvalidInputError(f"payload keys are strings (JSON object keys), got {bad[0]!r}")
            for v in p.values():
                if isinstance(v, float) and not math.isfinite(v):
                    raise InvalidInputError("payload values must be finite")
            try:
                _STRICT_JSON.encode(p)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"payload is not JSON-serialisable: {exc}") from None
        check_int64(pls)
        return pls

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"store {self.name!r} ({self.backend}) is closed")

    # ---- adapter hooks ----
    @abstractmethod
    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[Payload]) -> int: ...

    @abstractmethod
    def _delete(self, ids: list[str]) -> int: ...

    @abstractmethod
    def _search(
        self, queries: np.ndarray, k: int, flt: Filter | None, params: SearchParams, with_payload: bool = True
    ) -> list[list[Hit]]: ...

    @abstractmethod
    def _count(self) -> int: ...

    @abstractmethod
    def _ids(self) -> set[str]: ...

    @abstractmethod
    def _fetch(self, ids: list[str]) -> dict[str, tuple[np.ndarray | None, Payload]]: ...

    @abstractmethod
    def _flush(self) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def _info(self) -> dict[str, Any]: ...
