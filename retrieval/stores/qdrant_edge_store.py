"""Qdrant Edge store: Qdrant's own engine in-process (``qdrant-edge-py``), real HNSW and payload indexes.

Layout: ``<data_dir>/qdrant-edge/<name>/shard/`` (the Edge shard) and ``simlookup.json`` beside it
(dim, metric, fingerprint, vector name). HNSW is built only by ``build()`` (Edge's ``optimize()``),
and only for segments above the indexing threshold: keep it low so that small collections are indexed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from retrieval.errors import (
    CorruptIndexError,
    InvalidInputError,
    StoreClosedError,
    StoreError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
)
from retrieval.filters import Filter
from retrieval.metric import Metric
from retrieval.settings import QdrantSettings
from retrieval.stores.base import Hit, Payload, SearchParams, VectorStore
from retrieval.stores.manifest import check_expected, now_iso, write_json
from retrieval.stores.qdrant_common import (
    INDEX_SCHEMA,
    NamedVectorView,
    PayloadIndexType,
    PointRow,
    check_payload_indexes,
    index_key,
    infer_payload_schema,
    point_id,
    python_fallback,
    split_id,
    to_entries,
    to_hits,
    to_qdrant_filter,
    top_up,
)


def _edge() -> Any:
    import qdrant_edge

    return qdrant_edge


_OPEN: dict[str, list[Any]] = {}  # shard path → [EdgeShard, open views]: named-vector views share one shard
_OPEN_LOCK = threading.Lock()


def _acquire(path: Path, opener: Any, on_load: Any = None) -> Any:
    """The open shard at path, opened (then checked by on_load) if this process has none yet."""
    key = str(path.resolve())
    with _OPEN_LOCK:
        if key in _OPEN:
            _OPEN[key][1] += 1
            return _OPEN[key][0]
        shard = opener()
        if on_load is not None:
            try:
                on_load(shard)
            except BaseException:
                shard.close()
                raise
        _OPEN[key] = [shard, 1]
        return shard


def _release_shard(path: Path, on_last: Any = None) -> None:
    """Drop one user of the shard; the last one flushes it, runs on_last(shard) and closes it."""
    key = str(path.resolve())
    with _OPEN_LOCK:
        entry = _OPEN.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _OPEN[key]
            try:
                entry[0].flush()
                if on_last is not None:
                    on_last(entry[0])
            finally:
                entry[0].close()


def repair_hint(store_dir: Path, name: str) -> str:
    """How to rebuild a damaged Edge collection."""
    return (
        f"delete {store_dir} and re-create it: `simlookup ingest CORPUS --name {name} --qdrant edge` "
        "(the FAISS indexes of the collection are not affected)"
    )


def _map_edge_error(exc: Exception, path: Path) -> StoreError:
    msg = str(exc)
    if "already contains segment data" in msg:
        return StoreExistsError(f"Qdrant Edge path {path} already holds a shard")
    if "WouldBlock" in msg or "lock" in msg.lower():
        return StoreLockedError(
            f"Qdrant Edge shard {path} is already open (in this or another process, e.g. a running `simlookup serve`: "
            "stop it first, or search through it)"
        )
    if "not initialized" in msg:
        return StoreClosedError(f"Qdrant Edge shard {path} is closed")
    return StoreError(f"Qdrant Edge at {path}: {msg}")


class QdrantEdgeStore(NamedVectorView, VectorStore):
    """A Qdrant Edge shard holding one (optionally named) dense vector per point."""

    backend: ClassVar[str] = "qdrant-edge"

    def __init__(
        self,
        root: Path,
        name: str,
        settings: QdrantSettings,
        dim: int | None = None,
        metric: Metric | str = Metric.COSINE,
        fingerprint: str | None = None,
        vector_name: str = "",
        payload_indexes: Mapping[str, PayloadIndexType] | None = None,
        create: bool = True,
        vectors: Mapping[str, int] | None = None,
    ) -> None:
        payload_indexes = check_payload_indexes(payload_indexes)  # before anything is created
        self.dir = (settings.path or root / "qdrant-edge") / name
        self.shard_path = self.dir / "shard"
        self.meta_path = self.dir / "simlookup.json"
        self.settings = settings
        self.vector_name = vector_name
        self._lock = threading.RLock()
        e = _edge()
        if self.meta_path.exists():
            meta = json.loads(self.meta_path.read_text())
            check_expected(
                meta,
                self.meta_path,
                dim=dim,
                metric=Metric.parse(metric).value if dim is not None else None,
                fingerprint=fingerprint,
            )
            named = meta.get("vectors") or ({meta["vector_name"]: meta["dim"]} if meta.get("vector_name") else {})
            vector_name = self.set_view(named, vector_name, name, StoreError)
            dim_here = int(named.get(vector_name, meta["dim"])) if vector_name else int(meta["dim"])
            super().__init__(name, dim_here, Metric.parse(meta["metric"]), meta.get("fingerprint"))
            self._meta = meta
            self._check_segments(name)
            try:
                self._shard = _acquire(
                    self.shard_path,
                    lambda: e.EdgeShard.load(str(self.shard_path), self._load_config()),
                    lambda sh: self._check_count(sh),
                )
            except StoreError:
                raise
            except Exception as exc:  # noqa: BLE001 - Edge raises plain Exception
                raise _map_edge_error(exc, self.shard_path) from None
        else:
            if not create:
                raise StoreNotFoundError(f"no Qdrant Edge collection named {name!r} under {self.dir.parent}")
            if dim is None:
                raise InvalidInputError("creating a Qdrant Edge store needs its dimension")
            super().__init__(name, dim, Metric.parse(metric), fingerprint)
            self.set_view(
                dict(vectors or ({vector_name: dim} if vector_name else {})), vector_name, name, InvalidInputError
            )
            self.dir.mkdir(parents=True, exist_ok=True)
            try:
                self._shard = _acquire(
                    self.shard_path, lambda: e.EdgeShard.create(str(self.shard_path), self._config())
                )
            except Exception as exc:  # noqa: BLE001
                raise _map_edge_error(exc, self.shard_path) from None
            payload_indexes = {**settings.payload_indexes, **(payload_indexes or {})}
            self._create_indexes(payload_indexes)
            self._meta = {
                "format_version": 1,
                "dim": self.dim,
                "metric": self.metric.value,
                "fingerprint": fingerprint,
                "vector_name": vector_name,
                "vectors": self.named,
                "payload_indexes": payload_indexes or {},
                "hnsw": {"m": settings.hnsw_m, "ef_construct": settings.hnsw_ef_construct},
                "created": now_iso(),
            }
            write_json(self.meta_path, self._meta)

    def _config(self) -> Any:
        e = _edge()
        s = self.settings
        dist = {Metric.COSINE: e.Distance.Cosine, Metric.DOT: e.Distance.Dot, Metric.L2: e.Distance.Euclid}[self.metric]
        vectors: Any = (
            {n: e.EdgeVectorParams(size=d, distance=dist) for n, d in self.named.items()}
            if self.named
            else e.EdgeVectorParams(size=self.dim, distance=dist)
        )
        return e.EdgeConfig(
            vectors=vectors,
            hnsw_config=e.HnswIndexConfig(
                m=s.hnsw_m,
                ef_construct=s.hnsw_ef_construct,
                full_scan_threshold=s.full_scan_threshold_kb,
                max_indexing_threads=s.indexing_threads,
            ),
            optimizers=e.EdgeOptimizersConfig(indexing_threshold=s.indexing_threshold_kb),
            max_search_threads=s.search_threads,
        )

    def _load_config(self) -> Any:
        """None (the shard as persisted), or only the search pool size when settings fix it."""
        if self.settings.search_threads is None:
            return None
        e = _edge()
        dist = {Metric.COSINE: e.Distance.Cosine, Metric.DOT: e.Distance.Dot, Metric.L2: e.Distance.Euclid}[self.metric]
        vectors: Any = (
            {n: e.EdgeVectorParams(size=d, distance=dist) for n, d in self.named.items()}
            if self.named
            else e.EdgeVectorParams(size=self.dim, distance=dist)
        )
        return e.EdgeConfig(vectors=vectors, max_search_threads=self.settings.search_threads)

    @staticmethod
    def _schema(kind: str) -> Any:
        e = _edge()
        return {
            "keyword": e.PayloadSchemaType.Keyword,
            "integer": e.PayloadSchemaType.Integer,
            "float": e.PayloadSchemaType.Float,
            "bool": e.PayloadSchemaType.Bool,
        }[INDEX_SCHEMA[kind]]

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001
            raise _map_edge_error(exc, self.shard_path) from None

    # ---- hooks ----
    def _view_filter(self) -> Any:
        e = _edge()
        return e.Filter(must=[e.HasVectorCondition(self.vector_name)]) if self.multi else None

    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[Payload]) -> int:
        e = _edge()

        def existing(pids: list[str]) -> set[str]:
            return {str(r.id) for r in self._call(self._shard.retrieve, pids, False, False)}

        def insert(rows: list[PointRow]) -> None:
            self._call(self._shard.update, e.UpdateOperation.upsert_points([e.Point(*r) for r in rows]))

        def update(rows: list[PointRow]) -> None:
            pv = [e.PointVectors(pid, vec) for pid, vec, _ in rows]
            self._call(self._shard.update, e.UpdateOperation.update_vectors(pv))
            for pid, _, pl in rows:
                self._call(self._shard.update, e.UpdateOperation.set_payload([pid], pl))

        with self._lock:
            return self.upsert_view(ids, vectors, payloads, existing, insert, update)

    def _delete(self, ids: list[str]) -> int:
        e = _edge()

        def retrieve(pids: list[str], with_vector: bool) -> list[Any]:
            return self._call(self._shard.retrieve, pids, False, [self.vector_name] if with_vector else False)

        def delete_points(pids: list[Any]) -> None:
            self._call(self._shard.update, e.UpdateOperation.delete_points(pids))

        def delete_vectors(pids: list[Any]) -> None:
            self._call(self._shard.update, e.UpdateOperation.delete_vectors(pids, [self.vector_name]))

        with self._lock:
            return self.delete_view(ids, retrieve, delete_points, delete_vectors)

    def _search(
        self, queries: np.ndarray, k: int, flt: Filter | None, params: SearchParams, with_payload: bool = True
    ) -> list[list[Hit]]:
        e = _edge()
        qf = to_qdrant_filter(flt, e, edge=True, fallback=python_fallback(self._scroll))

        def run(rows: np.ndarray, exact: bool) -> list[list[Hit]]:
            sp = e.SearchParams(hnsw_ef=params.hnsw_ef or self.settings.hnsw_ef, exact=exact)
            reqs = [
                e.QueryRequest(
                    limit=k,
                    query=e.Query.Nearest(q.tolist(), using=self.vector_name or None),
                    filter=qf,
                    params=sp,
                    with_payload=True,
                    with_vector=False,
                )
                for q in rows
            ]
            with self._lock:
                res = self._call(self._shard.query_batch, e.QueryBatchRequest(reqs))
            return [to_hits(pts) for pts in res]

        hits = run(queries, params.exact)
        if qf is None or params.exact:
            return hits
        # HNSW with a filter can stop short (a selective filter on an unindexed field): top up exactly
        return top_up(hits, k, lambda: self._count_matching(qf), lambda rows: run(queries[rows], True))

    def _count_matching(self, qf: Any) -> int:
        e = _edge()
        view = self._view_filter()
        flt = qf if view is None else e.Filter(must=[qf, view])
        with self._lock:
            return int(self._call(self._shard.count, e.CountRequest(exact=True, filter=flt)))

    def _count(self) -> int:
        with self._lock:
            return int(self._call(self._shard.count, _edge().CountRequest(exact=True, filter=self._view_filter())))

    def _scroll(self, with_vector: bool = False) -> list[Any]:
        e = _edge()
        out: list[Any] = []
        offset = None
        with self._lock:
            while True:
                recs, offset = self._call(
                    self._shard.scroll,
                    e.ScrollRequest(
                        offset=offset,
                        limit=2048,
                        filter=self._view_filter(),
                        with_payload=True,
                        with_vector=with_vector,
                    ),
                )
                out.extend(recs)
                if offset is None:
                    return out

    def _ids(self) -> set[str]:
        return {split_id(r.payload)[0] for r in self._scroll()}

    def _fetch(self, ids: list[str]) -> dict[str, tuple[np.ndarray | None, Payload]]:
        with self._lock:
            recs = self._call(self._shard.retrieve, [point_id(i) for i in ids], True, True)
        return to_entries(recs, self.vector_name)

    def build(self) -> bool:
        """Index the payload fields (declared, and inferred from the payloads unless auto_payload_indexes is off),
        then build HNSW (Edge ``optimize()``, blocking). Returns whether any segment was optimised."""
        self._check_open()
        with self._lock:
            wanted = dict(self.settings.payload_indexes)
            if self.settings.auto_payload_indexes:
                wanted = {**infer_payload_schema(r.payload or {} for r in self._scroll()), **wanted}
            self._create_indexes(wanted)
            return bool(self._call(self._shard.optimize))

    def _create_indexes(self, wanted: Mapping[str, PayloadIndexType]) -> None:
        """Create the payload indexes not there yet (field → keyword | integer | float | bool)."""
        e = _edge()
        with self._lock:
            have = set(self._call(self._shard.info).payload_schema)
            for field, kind in wanted.items():
                key = index_key(field)
                if key is None or key in have or field in have:
                    continue
                self._call(self._shard.update, e.UpdateOperation.create_field_index(key, self._schema(kind)))

    def _flush(self) -> None:
        with self._lock:
            self._call(self._shard.flush)

    def _close(self) -> None:
        with self._lock:
            _release_shard(self.shard_path, self._record_count)

    # ---- damage checks: a shard that lost segments must not answer from what is left
    def _check_segments(self, name: str) -> None:
        seg = self.shard_path / "segments"
        if not seg.is_dir() or not any(p.is_dir() for p in seg.iterdir()):
            raise CorruptIndexError(
                f"Qdrant Edge shard {self.shard_path} has no segments ({seg} is missing or empty): its points "
                f"are gone and a search would answer from the write-ahead log alone; {repair_hint(self.dir, name)}"
            )

    def _shard_points(self, shard: Any) -> int:
        return int(shard.count(_edge().CountRequest(exact=True)))

    def _check_count(self, shard: Any) -> None:
        """After a clean close the shard held ``closed_points``: fewer or more now means lost segment files."""
        meta = json.loads(self.meta_path.read_text())
        expected = meta.get("closed_points")
        if expected is not None:
            found = self._shard_points(shard)
            if found != expected:
                raise CorruptIndexError(
                    f"Qdrant Edge shard {self.shard_path} holds {found} points but held {expected} when it was "
                    f"last closed: segment files under {self.shard_path / 'segments'} are missing or damaged; "
                    + repair_hint(self.dir, self.name)
                )
            del meta["closed_points"]  # open for writing: a crash from here on leaves no stale count behind
            write_json(self.meta_path, meta)

    def _record_count(self, shard: Any) -> None:
        meta = json.loads(self.meta_path.read_text())
        meta["closed_points"] = self._shard_points(shard)
        write_json(self.meta_path, meta)

    def _info(self) -> dict[str, Any]:
        with self._lock:
            si = self._call(self._shard.info)
        return {
            "engine": "Qdrant Edge (in-process)",
            "points": si.points_count,
            "indexed_vectors": si.indexed_vectors_count,
            "segments": si.segments_count,
            "payload_schema": sorted(si.payload_schema.keys()),
            "hnsw": self._meta.get("hnsw"),
            "disk_bytes": dir_bytes(self.dir),
            "path": str(self.dir),
        }


def dir_bytes(path: Path) -> int:
    """Bytes the files under path really occupy on disk (sparse, preallocated files count what they use)."""
    if not path.exists():
        return 0
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())
