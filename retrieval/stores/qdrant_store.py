"""One Qdrant store over two engines: Qdrant Edge in-process, and qdrant-client (a server, or its local mode).

The shape of qdrant-client's own ``QdrantClient`` over ``QdrantLocal`` / ``QdrantRemote``: ``QdrantStore`` holds
everything above the engine (the view on one named vector, payload key mapping, filter translation, the exact
top-up of short filtered answers, payload-index inference, read-only refusals) and calls a ``QdrantBackend``,
which implements only the engine calls (``qdrant_edge_store.EdgeBackend``, ``qdrant_client_store.ClientBackend``).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from retrieval.errors import InvalidInputError, StoreError, StoreLockedError, StoreNotFoundError
from retrieval.filters import Filter, holds_path
from retrieval.keyword.spec import KeywordSpec
from retrieval.keyword.terms import doc_sparse
from retrieval.metric import Metric
from retrieval.settings import QdrantSettings
from retrieval.stores.base import Hit, Payload, SearchParams, VectorStore
from retrieval.stores.manifest import check_expected
from retrieval.stores.qdrant_common import (
    ID_KEY,
    INDEX_SCHEMA,
    PayloadIndexType,
    QdrantFilterBuilder,
    check_payload_indexes,
    index_key,
    infer_payload_schema,
    point_id,
    python_fallback,
    split_id,
    top_up,
    with_id,
)
from retrieval.stores.qdrant_tier import QuantSearch, Tier, check_change
from retrieval.stores.thin import NEIGHBOURS, emptied, judged

log = logging.getLogger(__name__)
PointRow = tuple[str, Any, dict[str, Any]]  # (Qdrant point id, vector as the engine takes it, payload with the id)
SCROLL_PAGE = 2048


@dataclass
class Shape:
    """What a collection is: its vectors (name → dim; empty for one unnamed vector), metric and fingerprint.

    ``dim`` is the unnamed vector's (or the creating view's); ``where`` names it in mismatch errors."""

    dim: int
    metric: Metric
    fingerprint: str | None
    vectors: dict[str, int] = field(default_factory=dict)
    vector_name: str = ""
    payload_indexes: dict[str, PayloadIndexType] = field(default_factory=dict)
    where: Path = Path(".")
    sparse: list[str] = field(default_factory=list)  # sparse named vectors (IDF modifier): the keyword leg


class QdrantBackend(ABC):
    """The engine calls of one Qdrant collection: points are Qdrant point ids, filters the engine's own models
    (built by ``filters()``), payloads as stored. Nothing here validates, maps keys or retries a short answer."""

    kind: str  # the store's ``backend``: qdrant-edge | qdrant-local | qdrant-server
    label: str  # in messages: "Qdrant Edge", "Qdrant"
    models: Any  # qdrant_edge, or qdrant_client.models
    edge: bool  # which flavour of filter models
    exact_only: bool = False  # every search is exact already (local mode): no top-up
    # the collection's memory tier: a new one's (set by the store before create), else as read_shape found it
    tier: Tier = Tier()
    can_drop_quantization: bool = True  # an existing collection's quantization can be removed (not on Edge)
    uses_payload_indexes: bool = True  # inferred payload indexes are worth creating

    def query_params(self) -> frozenset[str]:
        """The query parameters this engine uses."""
        return frozenset({"hnsw_ef", "exact"})

    def filters(self, fallback: Any = None) -> QdrantFilterBuilder:
        """A filter builder for this engine's models."""
        return QdrantFilterBuilder(self.models, self.edge, fallback)

    @abstractmethod
    def read_shape(self) -> Shape | None:
        """The collection's shape as persisted (and its recorded ``tier``), None when there is no collection."""

    @abstractmethod
    def not_found(self, name: str) -> StoreNotFoundError:
        """The error for a missing collection, naming where it was looked for."""

    @abstractmethod
    def open(self, read_only: bool, tier: Tier | None = None) -> None:
        """Attach to the existing collection (a read-only open changes no file); ``tier``: a writer's new tier,
        which an engine may configure as it loads (Edge), to be built by the next optimize."""

    @abstractmethod
    def create(self, shape: Shape, indexes: list[tuple[str, str]]) -> None:
        """Create the collection, then these payload indexes (Qdrant key, schema kind)."""

    @abstractmethod
    def upsert_points(self, rows: list[PointRow]) -> None: ...

    @abstractmethod
    def update_vectors(self, rows: list[tuple[str, dict[str, list[float]]]]) -> None: ...

    @abstractmethod
    def set_payload(self, pid: str, payload: dict[str, Any]) -> None: ...

    @abstractmethod
    def delete_points(self, pids: list[Any]) -> None: ...

    @abstractmethod
    def delete_vectors(self, pids: list[Any], vector_name: str) -> None: ...

    @abstractmethod
    def retrieve(self, pids: list[str], with_payload: bool, with_vector: bool | list[str]) -> list[Any]:
        """Records (id, payload, vector) of the points that exist."""

    @abstractmethod
    def query_batch(
        self,
        queries: np.ndarray,
        using: str | None,
        flt: Any,
        limit: int,
        hnsw_ef: int,
        exact: bool,
        quant: QuantSearch | None,
        with_payload: bool | list[str],
    ) -> list[list[Any]]:
        """Scored points (id, score, payload) per query, best first; ``quant``: how a quantized collection is
        searched (None: not quantized), ignored by an exact search."""

    @abstractmethod
    def count(self, flt: Any) -> int:
        """Exact number of points matching flt (None: all)."""

    @abstractmethod
    def scroll(self, flt: Any, offset: Any, limit: int, with_vector: bool) -> tuple[list[Any], Any]:
        """One page of records with payloads and the next offset (None at the end)."""

    @abstractmethod
    def payload_schema(self) -> set[str]:
        """Keys that carry a payload index."""

    @abstractmethod
    def create_field_index(self, key: str, kind: str) -> None: ...

    @abstractmethod
    def apply_tier(self, tier: Tier) -> None:
        """Give the existing collection this tier (the next optimize builds what it needs) and record it."""

    @abstractmethod
    def optimize(self) -> bool:
        """Build what the engine builds on demand (Edge HNSW); True if work was done."""

    @abstractmethod
    def flush(self) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Release the handle (the last user closes it). Safe before open or create."""

    @abstractmethod
    def info(self) -> dict[str, Any]: ...

    # ---- sparse named vectors (the keyword leg, ``retrieval.keyword``): IDF modifier on
    live_idf: bool = True  # IDF over the live points (Edge, local mode); a server counts its index's own stats

    def sparse_names(self) -> set[str]:
        """The collection's sparse named vectors."""
        return set()

    def add_sparse(self, name: str) -> None:
        """Add a sparse named vector (IDF modifier) to the existing collection."""
        raise StoreError(f"{self.label} cannot add a sparse vector to an existing collection")

    def sparse_vector(self, indices: list[int], values: list[float]) -> Any:
        """The engine's sparse vector object."""
        raise StoreError(f"{self.label} has no sparse vectors")

    def query_sparse(
        self, indices: list[int], values: list[float], using: str, flt: Any, limit: int, with_payload: bool | list[str]
    ) -> list[Any]:
        """Scored points (id, score, payload) of one sparse query, best first (exact: an inverted index)."""
        raise StoreError(f"{self.label} has no sparse vectors")


class QdrantStore(VectorStore):
    """A Qdrant collection, or one named vector of it, through one engine backend.

    A collection may hold several named vectors per point (``vectors``: name → dim); a store is a view on one of
    them (``vector_name``; "" for an unnamed vector): it writes, deletes and counts only its own vector and keeps
    the point's others. A read-only store (``read_only=True``) refuses writes and changes no file.
    """

    backend: ClassVar[str] = "qdrant"
    # the keyword leg (set by the collection): upserts also write each text's BM25 factors as the sparse vector
    # ``keyword.vector``, when the collection has it (``sparse``)
    keyword: KeywordSpec | None = None
    stats_thin: int = 0  # filtered queries answered exactly because the filter emptied their neighbourhood

    def __init__(
        self,
        engine: QdrantBackend,
        name: str,
        settings: QdrantSettings,
        dim: int | None = None,
        metric: Metric | str = Metric.COSINE,
        fingerprint: str | None = None,
        vector_name: str = "",
        payload_indexes: Mapping[str, PayloadIndexType] | None = None,
        create: bool = True,
        vectors: Mapping[str, int] | None = None,
        read_only: bool = False,
        sparse: Sequence[str] = (),
    ) -> None:
        """``sparse``: sparse named vectors a new collection is created with (the keyword leg's)."""
        self.engine = engine
        self.settings = settings
        self.read_only = read_only
        self.backend = engine.kind  # type: ignore[misc]
        self.vector_name = vector_name
        self.named: dict[str, int] = {}
        self._lock = threading.RLock()  # a write reads, then writes: one at a time per store
        self._pending: Tier | None = None  # a writer's tier change, applied by the next build()
        engine.tier = Tier().wanted(settings)  # a new collection's; read_shape replaces it by an existing one's
        try:
            declared = check_payload_indexes(payload_indexes)  # before anything is created
            shape = engine.read_shape()
            if shape is not None:
                self._open(shape, name, dim, metric, fingerprint, vector_name)
            else:
                if not create or read_only:
                    raise engine.not_found(name)
                if dim is None:
                    raise InvalidInputError(f"creating a {engine.label} collection needs its dimension")
                super().__init__(name, dim, Metric.parse(metric), fingerprint)
                named = dict(vectors or ({vector_name: dim} if vector_name else {}))
                vector_name = self._set_view(named, vector_name, InvalidInputError)
                wanted = {**settings.payload_indexes, **declared}
                new = Shape(dim, self.metric, fingerprint, self.named, vector_name, wanted, sparse=list(sparse))
                engine.create(new, self._index_plan(wanted, set()))
            self.sparse = engine.sparse_names()
        except BaseException:
            engine.close()
            raise

    def _open(
        self, shape: Shape, name: str, dim: int | None, metric: Metric | str, fingerprint: str | None, vector_name: str
    ) -> None:
        vector_name = self._set_view(shape.vectors, vector_name, StoreError, name)
        dim_here = int(shape.vectors.get(vector_name, shape.dim)) if vector_name else int(shape.dim)
        check_expected(
            {"dim": dim_here, "metric": shape.metric.value, "fingerprint": shape.fingerprint},
            shape.where,
            dim=dim,
            metric=Metric.parse(metric).value if dim is not None else None,
            fingerprint=fingerprint if shape.fingerprint else None,  # a collection made without one takes any
        )
        super().__init__(name, dim_here, shape.metric, shape.fingerprint)
        e = self.engine
        wanted = e.tier.wanted(self.settings)
        if wanted != e.tier and not self.read_only:  # a reader searches the collection as it is
            check_change(e.tier, wanted, name, e.can_drop_quantization, e.label)
            self._pending = wanted
            log.warning(
                "%s collection %r: %s now, %s from the settings at the next build",
                e.label,
                name,
                e.tier.describe(),
                wanted.describe(),
            )
        e.open(self.read_only, self._pending)

    @property
    def tier(self) -> Tier:
        """The collection's memory tier (quantization, on disk) as built; a writer's change waits for build()."""
        return self.engine.tier

    # ---- the view on one named vector
    def _set_view(self, named: dict[str, int], vector_name: str, err: type[Exception], name: str = "") -> str:
        """Record the collection's vectors and pick this view's (the first when none is asked); returns its name."""
        if vector_name and named and vector_name not in named:
            raise err(f"collection {name or self.name!r} has no vector named {vector_name!r} (it has {sorted(named)})")
        if named and not vector_name:
            vector_name = next(iter(named))
        self.named, self.vector_name = dict(named), vector_name
        return vector_name

    @property
    def multi(self) -> bool:
        """Several named vectors in one collection: this view writes only its own vector."""
        return len(self.named) > 1

    def _filters(self) -> QdrantFilterBuilder:
        return self.engine.filters(python_fallback(self._scroll))

    def has_field(self, path: str) -> bool:
        """Whether any point of this view holds ``path`` with a value or null: an exact count of such points (a
        path Qdrant cannot name is evaluated in Python over the points)."""
        self._check_open()
        b = self.engine.filters()
        cond = b.holds(path)
        if cond is None:
            return any(holds_path(split_id(r.payload)[1], path) for r in self._scroll())
        return self.engine.count(self._in_view(b.filter(must=[cond]))) > 0

    def _in_view(self, qf: Any) -> Any:
        """qf limited to the points holding this view's vector (on a multi-vector collection)."""
        if not self.multi:
            return qf
        b = self.engine.filters()
        view = b.has_vector(self.vector_name)
        return b.filter(must=[view] if qf is None else [qf, view])

    def _holds_view(self, record: Any) -> bool:
        return not self.multi or (isinstance(record.vector, dict) and self.vector_name in record.vector)

    # ---- writes
    def _check_writable(self, what: str) -> None:
        if self.read_only:
            raise StoreLockedError(
                f"{self.engine.label} collection {self.name!r} is open read-only: {what} needs a store opened "
                "with read_only=False"
            )

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Payload] | None = None, batch_size: int = 1024
    ) -> int:
        """``VectorStore.upsert``; a read-only store refuses it (StoreLockedError)."""
        self._check_open()
        self._check_writable("upsert")
        return super().upsert(ids, vectors, payloads, batch_size)

    def delete(self, ids: Sequence[str]) -> int:
        """``VectorStore.delete``; a read-only store refuses it (StoreLockedError)."""
        self._check_open()
        self._check_writable("delete")
        return super().delete(ids)

    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[Payload]) -> int:
        """Insert new points whole; on a multi-vector collection update existing points' own vector and payload
        in place (their other vectors stay)."""
        pids = [point_id(sid) for sid in ids]
        with self._lock:
            have = {str(r.id) for r in self.engine.retrieve(pids, False, False)} if self.multi else set()
            rows = [(pid, vectors[i], with_id(ids[i], payloads[i])) for i, pid in enumerate(pids)]
            new = [(pid, self._point_vector(v, pl), pl) for pid, v, pl in rows if pid not in have]
            upd = [(pid, v, pl) for pid, v, pl in rows if pid in have]
            if new:
                self.engine.upsert_points(new)
            if upd:
                self.engine.update_vectors([(pid, {self.vector_name: v.tolist()}) for pid, v, _ in upd])
                for pid, _, pl in upd:
                    self.engine.set_payload(pid, pl)
        return len(pids)

    def _point_vector(self, v: np.ndarray, payload: Payload | None = None) -> Any:
        lst = v.tolist()
        sparse = self._sparse_of(payload) if payload is not None and self.keyword is not None else None
        if sparse is not None and self.keyword is not None:
            return {self.vector_name: lst, self.keyword.vector: sparse}
        return {self.vector_name: lst} if self.vector_name else lst

    # ---- the keyword leg: a sparse named vector holding each text's BM25 factors (``retrieval.keyword``)
    def _sparse_of(self, payload: Payload) -> Any:
        """The engine's sparse vector of one stored payload (None: no keyword leg here, or no tokens)."""
        spec = self.keyword
        if spec is None or self.multi or spec.vector not in self.sparse:
            return None
        got = doc_sparse(payload, spec)
        return None if got is None else self.engine.sparse_vector(*got)

    def ensure_sparse(self, name: str) -> bool:
        """Add the sparse named vector ``name`` when the collection lacks it; True if it was added."""
        self._check_open()
        self._check_writable("adding a sparse vector")
        with self._lock:
            if name in self.sparse:
                return False
            self.engine.add_sparse(name)
            self.sparse = self.engine.sparse_names()
            return True

    def rewrite_sparse(self) -> int:
        """Write every point's keyword-leg sparse vector from its payload again (after the leg was added or its
        average length changed); how many points got one."""
        self._check_open()
        self._check_writable("rewriting the keyword leg")
        spec = self.keyword
        if spec is None or spec.vector not in self.sparse:
            raise StoreError(f"{self.engine.label} collection {self.name!r} has no keyword leg to write")
        written = 0
        with self._lock:
            recs = self._scroll()
            for i in range(0, len(recs), SCROLL_PAGE):
                page = recs[i : i + SCROLL_PAGE]
                rows: list[tuple[str, Any]] = []
                empty: list[Any] = []
                for r in page:
                    sv = self._sparse_of(r.payload or {})
                    if sv is None:
                        empty.append(r.id)
                    else:
                        rows.append((r.id, {spec.vector: sv}))
                if rows:
                    self.engine.update_vectors(rows)
                if empty:
                    self.engine.delete_vectors(empty, spec.vector)
                written += len(rows)
        return written

    def search_sparse(
        self,
        indices: np.ndarray | Sequence[int],
        values: np.ndarray | Sequence[float],
        k: int,
        filter: Filter | Mapping[str, Any] | None = None,
        with_payload: bool = True,
        capped: bool = True,
    ) -> list[Hit]:
        """The keyword leg: points holding any of the query's terms, best first by Σ value · IDF · stored factor
        (BM25 with the factors ``retrieval.keyword.spec.doc_sparse`` wrote), at most ``k``; a filter pre-filters
        and the IDF stays collection-wide. ``capped=False``: k may pass the max_k limit (the collection's keyword
        leg fetching a run of tied documents at its cut, ``retrieval.keyword.fusion.top_with_ties``)."""
        self._check_open()
        if capped:
            self.limits.check(k, None)
        spec = self.keyword
        if spec is None or spec.vector not in self.sparse:
            raise StoreError(f"{self.engine.label} collection {self.name!r} has no keyword leg")
        if not len(indices):
            return []
        flt = None if filter is None else filter if isinstance(filter, Filter) else Filter.from_dict(filter)
        qf = self._filters().build(flt if flt else None)
        selector: bool | list[str] = True if with_payload else [ID_KEY]
        pts = self.engine.query_sparse(
            [int(i) for i in indices], [float(v) for v in values], spec.vector, qf, k, selector
        )
        return to_hits(pts)

    def _delete(self, ids: list[str]) -> int:
        """Delete these points (on a multi-vector collection: only this view's vector); how many had it."""
        with self._lock:
            want: bool | list[str] = [self.vector_name] if self.multi else False
            present = [
                r.id for r in self.engine.retrieve([point_id(i) for i in ids], False, want) if self._holds_view(r)
            ]
            if present:
                if self.multi:
                    self.engine.delete_vectors(present, self.vector_name)
                else:
                    self.engine.delete_points(present)
        return len(present)

    def build(self) -> bool:
        """Index the payload fields (declared, and inferred from the payloads unless auto_payload_indexes is off or
        the engine ignores indexes), then build what the engine builds on demand (Edge HNSW, blocking).
        Returns whether the engine did work (a server builds in the background, local mode has no index)."""
        self._check_open()
        self._check_writable("build")
        with self._lock:
            if self._pending is not None:
                self.engine.apply_tier(self._pending)
                self._pending = None
            wanted: dict[str, PayloadIndexType] = dict(self.settings.payload_indexes)
            if self.settings.auto_payload_indexes and self.engine.uses_payload_indexes:
                wanted = {**infer_payload_schema(r.payload or {} for r in self._scroll()), **wanted}
            for key, kind in self._index_plan(wanted, self.engine.payload_schema()):
                self.engine.create_field_index(key, kind)
            return self.engine.optimize()

    @staticmethod
    def _index_plan(wanted: Mapping[str, PayloadIndexType], have: set[str]) -> list[tuple[str, str]]:
        """(Qdrant key, schema kind) of each wanted index not there yet (field → keyword | integer | float | bool)."""
        plan: list[tuple[str, str]] = []
        for fld, kind in wanted.items():
            key = index_key(fld)
            if key is None or key in have or fld in have:
                continue
            have = have | {key}
            plan.append((key, INDEX_SCHEMA[kind]))
        return plan

    # ---- reads
    def query_params(self) -> frozenset[str]:
        """hnsw_ef and exact; on a quantized collection oversampling, rescore and rerank (the oversampling's
        older name) too."""
        quantized = {"oversampling", "rescore", "rerank"} if self.tier.quantized else set()
        return self.engine.query_params() | quantized

    def _quant(self, params: SearchParams) -> QuantSearch | None:
        """How this search uses the quantized vectors (None: the collection has none)."""
        if not self.tier.quantized:
            return None
        rerank = params.rerank if params.rerank is not None and params.rerank > 1 else None
        if rerank is not None and params.oversampling is not None:
            raise InvalidInputError(
                "rerank and oversampling both set the oversampling of a quantized Qdrant search: give one"
            )
        over = params.oversampling if params.oversampling is not None else rerank
        return QuantSearch(float(over or self.tier.oversampling(self.settings)), params.rescore is not False)

    def _search(
        self, queries: np.ndarray, k: int, flt: Filter | None, params: SearchParams, with_payload: bool = True
    ) -> list[list[Hit]]:
        qf = self._filters().build(flt)
        # the original id lives in the payload: without payload, ask for that key alone
        selector: bool | list[str] = True if with_payload else [ID_KEY]
        hnsw_ef = params.hnsw_ef or self.settings.hnsw_ef
        quant = self._quant(params)

        def run(rows: np.ndarray, exact: bool) -> list[list[Hit]]:
            res = self.engine.query_batch(rows, self.vector_name or None, qf, k, hnsw_ef, exact, quant, selector)
            return [to_hits(pts) for pts in res]

        if qf is None or params.exact or self.engine.exact_only:
            return run(queries, params.exact)
        assert flt is not None
        matches = self.engine.count(self._in_view(qf))
        if matches <= self.settings.exact_filter_limit:  # few matches: exact over them costs little and is right
            return run(queries, True)
        hits = run(queries, False)
        # a filter that emptied a query's neighbourhood: the graph answered from wherever its walk landed
        live = self._count()
        if judged(matches, live):
            near = self.engine.query_batch(queries, self.vector_name or None, None, NEIGHBOURS, hnsw_ef, False,
                                           quant, True)
            held = np.array([sum(flt.matches(h.payload) for h in to_hits(pts)) for pts in near])
            rows = np.flatnonzero(emptied(held, NEIGHBOURS, matches, live))
            if len(rows):
                self.stats_thin += len(rows)
                for i, h in zip(rows, run(queries[rows], True), strict=True):
                    hits[i] = h
        # HNSW with a filter can stop short (a selective filter on an unindexed field): top up exactly
        return top_up(hits, k, lambda: matches, lambda rows: run(queries[rows], True))

    def _count(self) -> int:
        return self.engine.count(self._in_view(None))

    def _scroll(self, with_vector: bool = False) -> list[Any]:
        out: list[Any] = []
        offset = None
        flt = self._in_view(None)
        while True:
            recs, offset = self.engine.scroll(flt, offset, SCROLL_PAGE, with_vector)
            out.extend(recs)
            if offset is None:
                return out

    def _ids(self) -> set[str]:
        return {split_id(r.payload)[0] for r in self._scroll()}

    def _fetch(self, ids: list[str]) -> dict[str, tuple[np.ndarray | None, Payload]]:
        return to_entries(self.engine.retrieve([point_id(i) for i in ids], True, True), self.vector_name)

    def _flush(self) -> None:
        self.engine.flush()

    def _close(self) -> None:
        self.engine.close()

    def _info(self) -> dict[str, Any]:
        out = {**self.engine.info(), "tier": self.tier.to_meta(), "exact_thin": self.stats_thin}
        if self._pending is not None:
            out["tier_pending"] = self._pending.to_meta()  # the settings' tier, made at the next build
        return out


def to_hits(points: Iterable[Any]) -> list[Hit]:
    """Scored points (Edge or qdrant-client) → Hits with the original id and the user's payload."""
    out = []
    for p in points:
        sid, pl = split_id(p.payload)
        out.append(Hit(sid, float(p.score), pl))
    return out


def to_entries(records: Iterable[Any], vector_name: str) -> dict[str, tuple[np.ndarray | None, Payload]]:
    """Retrieved records → {original id: (vector of this view or None, payload)}."""
    out: dict[str, tuple[np.ndarray | None, Payload]] = {}
    for r in records:
        sid, pl = split_id(r.payload)
        v = r.vector
        if isinstance(v, dict):
            v = v.get(vector_name)
        out[sid] = (None if v is None else np.asarray(v, dtype=np.float32), pl)
    return out
