"""Qdrant Edge store: Qdrant's own engine in-process (``qdrant-edge-py``), real HNSW and payload indexes.

Layout: ``<data_dir>/qdrant-edge/<name>/shard/`` (the Edge shard) and ``simlookup.json`` beside it
(dim, metric, fingerprint, vector name). HNSW is built only by ``build()`` (Edge's ``optimize()``),
and only for segments above the indexing threshold: keep it low so that small collections are indexed.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from retrieval.errors import (
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
    ID_KEY,
    PayloadIndexType,
    field_exists_filter,
    point_id,
    split_id,
    to_qdrant_filter,
    with_id,
)


def _edge() -> Any:
    import qdrant_edge

    return qdrant_edge


def _map_edge_error(exc: Exception, path: Path) -> StoreError:
    msg = str(exc)
    if "already contains segment data" in msg:
        return StoreExistsError(f"Qdrant Edge path {path} already holds a shard")
    if "WouldBlock" in msg or "lock" in msg.lower():
        return StoreLockedError(f"Qdrant Edge shard {path} is already open (in this or another process)")
    if "not initialized" in msg:
        return StoreClosedError(f"Qdrant Edge shard {path} is closed")
    return StoreError(f"Qdrant Edge at {path}: {msg}")


class QdrantEdgeStore(VectorStore):
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
        payload_indexes: dict[str, PayloadIndexType] | None = None,
        create: bool = True,
    ) -> None:
        self.dir = (settings.path or root / "qdrant-edge") / name
        self.shard_path = self.dir / "shard"
        self.meta_path = self.dir / "simlookup.json"
        self.settings = settings
        self.vector_name = vector_name
        self._lock = threading.RLock()
        self._fields: set[str] = set()
        e = _edge()
        if self.meta_path.exists():
            meta = json.loads(self.meta_path.read_text())
            check_expected(
                meta,
                self.meta_path,
                dim=dim,
                metric=Metric.parse(metric).value if dim is not None else None,
                fingerprint=fingerprint,
                vector_name=vector_name if vector_name else None,
            )
            super().__init__(name, int(meta["dim"]), Metric.parse(meta["metric"]), meta.get("fingerprint"))
            self.vector_name = meta.get("vector_name", "")
            self._meta = meta
            try:
                self._shard = e.EdgeShard.load(str(self.shard_path))
            except Exception as exc:  # noqa: BLE001 - Edge raises plain Exception
                raise _map_edge_error(exc, self.shard_path) from None
        else:
            if not create:
                raise StoreNotFoundError(f"no Qdrant Edge collection named {name!r} under {self.dir.parent}")
            if dim is None:
                raise InvalidInputError("creating a Qdrant Edge store needs its dimension")
            super().__init__(name, dim, Metric.parse(metric), fingerprint)
            self.dir.mkdir(parents=True, exist_ok=True)
            try:
                self._shard = e.EdgeShard.create(str(self.shard_path), self._config())
            except Exception as exc:  # noqa: BLE001
                raise _map_edge_error(exc, self.shard_path) from None
            for field, kind in (payload_indexes or {}).items():
                self._shard.update(e.UpdateOperation.create_field_index(field, self._schema(kind)))
            self._meta = {
                "format_version": 1,
                "dim": self.dim,
                "metric": self.metric.value,
                "fingerprint": fingerprint,
                "vector_name": vector_name,
                "payload_indexes": payload_indexes or {},
                "hnsw": {"m": settings.hnsw_m, "ef_construct": settings.hnsw_ef_construct},
                "created": now_iso(),
            }
            write_json(self.meta_path, self._meta)

    def _config(self) -> Any:
        e = _edge()
        s = self.settings
        dist = {Metric.COSINE: e.Distance.Cosine, Metric.DOT: e.Distance.Dot, Metric.L2: e.Distance.Euclid}[self.metric]
        vp = e.EdgeVectorParams(size=self.dim, distance=dist)
        return e.EdgeConfig(
            vectors={self.vector_name: vp} if self.vector_name else vp,
            hnsw_config=e.HnswIndexConfig(
                m=s.hnsw_m, ef_construct=s.hnsw_ef_construct, full_scan_threshold=s.full_scan_threshold_kb
            ),
            optimizers=e.EdgeOptimizersConfig(indexing_threshold=s.indexing_threshold_kb),
        )

    @staticmethod
    def _schema(kind: str) -> Any:
        e = _edge()
        return {
            "keyword": e.PayloadSchemaType.Keyword,
            "integer": e.PayloadSchemaType.Integer,
            "float": e.PayloadSchemaType.Float,
            "bool": e.PayloadSchemaType.Bool,
        }[kind]

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001
            raise _map_edge_error(exc, self.shard_path) from None

    def _vec(self, v: np.ndarray) -> Any:
        lst = v.tolist()
        return {self.vector_name: lst} if self.vector_name else lst

    # ---- hooks ----
    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[Payload]) -> int:
        e = _edge()
        points = [e.Point(point_id(sid), self._vec(vectors[i]), with_id(sid, payloads[i])) for i, sid in enumerate(ids)]
        with self._lock:
            self._call(self._shard.update, e.UpdateOperation.upsert_points(points))
            for p in payloads:
                self._fields.update(p)
        return len(points)

    def _delete(self, ids: list[str]) -> int:
        e = _edge()
        with self._lock:
            present = self._call(self._shard.retrieve, [point_id(i) for i in ids], False, False)
            if present:
                self._call(self._shard.update, e.UpdateOperation.delete_points([r.id for r in present]))
        return len(present)

    def _search(self, queries: np.ndarray, k: int, flt: Filter | None, params: SearchParams) -> list[list[Hit]]:
        e = _edge()
        qf = to_qdrant_filter(flt, e, edge=True)
        sp = e.SearchParams(hnsw_ef=params.hnsw_ef or self.settings.hnsw_ef, exact=params.exact)
        reqs = [
            e.QueryRequest(
                limit=k,
                query=e.Query.Nearest(q.tolist(), using=self.vector_name or None),
                filter=qf,
                params=sp,
                with_payload=True,
                with_vector=False,
            )
            for q in queries
        ]
        with self._lock:
            res = self._call(self._shard.query_batch, e.QueryBatchRequest(reqs))
        out = []
        for pts in res:
            hits = []
            for p in pts:
                sid, pl = split_id(p.payload)
                hits.append(Hit(sid, float(p.score), pl))
            out.append(hits)
        return out

    def _count(self) -> int:
        with self._lock:
            return int(self._call(self._shard.count, _edge().CountRequest(exact=True)))

    def _scroll(self, with_vector: bool = False) -> list[Any]:
        e = _edge()
        out: list[Any] = []
        offset = None
        with self._lock:
            while True:
                recs, offset = self._call(
                    self._shard.scroll,
                    e.ScrollRequest(offset=offset, limit=2048, with_payload=True, with_vector=with_vector),
                )
                out.extend(recs)
                if offset is None:
                    return out

    def _ids(self) -> set[str]:
        return {split_id(r.payload)[0] for r in self._scroll()}

    def _fetch(self, ids: list[str]) -> dict[str, tuple[np.ndarray | None, Payload]]:
        with self._lock:
            recs = self._call(self._shard.retrieve, [point_id(i) for i in ids], True, True)
        out: dict[str, tuple[np.ndarray | None, Payload]] = {}
        for r in recs:
            sid, pl = split_id(r.payload)
            v = r.vector
            if isinstance(v, dict):
                v = v.get(self.vector_name)
            out[sid] = (None if v is None else np.asarray(v, dtype=np.float32), pl)
        return out

    def _has_field(self, field: str) -> bool:
        if field in self._fields or field == ID_KEY:
            return field != ID_KEY
        e = _edge()
        req = e.CountRequest(exact=True, filter=field_exists_filter(field, e, edge=True))
        with self._lock:
            found = self._call(self._shard.count, req) > 0
        if found:
            self._fields.add(field)
        return found

    def build(self) -> bool:
        """Build HNSW (Edge ``optimize()``, blocking). Returns whether any segment was optimised."""
        self._check_open()
        with self._lock:
            return bool(self._call(self._shard.optimize))

    def _flush(self) -> None:
        with self._lock:
            self._call(self._shard.flush)

    def _close(self) -> None:
        with self._lock:
            try:
                self._shard.flush()
            finally:
                self._shard.close()

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


def remove_edge_store(root: Path, settings: QdrantSettings, name: str) -> None:
    d = (settings.path or root / "qdrant-edge") / name
    if d.exists():
        shutil.rmtree(d)
