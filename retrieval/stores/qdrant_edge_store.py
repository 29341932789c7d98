"""Qdrant Edge: Qdrant's own engine in-process (``qdrant-edge-py``), real HNSW and payload indexes.

Layout: ``<data_dir>/qdrant-edge/<name>/shard/`` (the Edge shard) and ``simlookup.json`` beside it
(dim, metric, fingerprint, vector names). HNSW is built only by ``build()`` (Edge's ``optimize()``),
and only for segments above the indexing threshold: keep it low so that small collections are indexed.
``EdgeBackend`` makes the engine calls; ``QdrantStore`` does the rest.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from retrieval.errors import (
    CorruptIndexError,
    StoreClosedError,
    StoreError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
)
from retrieval.metric import Metric
from retrieval.settings import QdrantSettings
from retrieval.stores.manifest import atomic_write, now_iso, write_json
from retrieval.stores.qdrant_common import PayloadIndexType
from retrieval.stores.qdrant_handles import HANDLES
from retrieval.stores.qdrant_store import PointRow, QdrantBackend, QdrantStore, Shape
from retrieval.stores.qdrant_tier import QuantSearch, Tier

log = logging.getLogger(__name__)


def _edge() -> Any:
    import qdrant_edge

    return qdrant_edge


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


class EdgeBackend(QdrantBackend):
    """The engine calls on one Edge shard, shared with every other store of this process on the same path."""

    kind = "qdrant-edge"
    label = "Qdrant Edge"
    edge = True
    can_drop_quantization = False  # a load with no quantization config keeps the shard's

    def __init__(self, root: Path, name: str, settings: QdrantSettings) -> None:
        self.name = name
        self.dir = (settings.path or root / "qdrant-edge") / name
        self.shard_path = self.dir / "shard"
        self.meta_path = self.dir / "simlookup.json"
        self.settings = settings
        self.models = _edge()
        self._shard: Any = None
        self._key = HANDLES.key("edge", self.shard_path)
        self._lock = threading.RLock()
        self._meta: dict[str, Any] = {}
        self._named: dict[str, int] = {}
        self._metric = Metric.COSINE
        self._dim = 0
        self._sparse: list[str] = []  # sparse named vectors a new shard is created with

    # ---- open / create
    def read_shape(self) -> Shape | None:
        if not self.meta_path.exists():
            return None
        meta = json.loads(self.meta_path.read_text())
        named = meta.get("vectors") or ({meta["vector_name"]: meta["dim"]} if meta.get("vector_name") else {})
        self._meta = meta
        self._named, self._metric, self._dim = dict(named), Metric.parse(meta["metric"]), int(meta["dim"])
        self.tier = Tier.from_meta(meta.get("tier"))
        return Shape(int(meta["dim"]), self._metric, meta.get("fingerprint"), dict(named), where=self.meta_path)

    def not_found(self, name: str) -> StoreNotFoundError:
        return StoreNotFoundError(f"no Qdrant Edge collection named {name!r} under {self.dir.parent}")

    def open(self, read_only: bool, tier: Tier | None = None) -> None:
        """Load the shard, or join this process's open handle on it. A writer's new ``tier`` is configured as
        the first store loads it (the next optimize builds it; ``apply_tier`` records it)."""
        self._check_segments()
        try:
            self._shard = HANDLES.acquire(
                self._key,
                lambda: self._load(read_only, tier),
                lambda sh: sh.close(),
                check=self._check_count,
                writer=not read_only,
                on_writer=lambda sh: self._forget_count(),
            )
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - Edge raises plain Exception
            raise _map_edge_error(exc, self.shard_path) from None

    def _load(self, read_only: bool, tier: Tier | None = None) -> Any:
        """Load the shard. Edge rewrites edge_config.json with the config a load resolves: a reader puts the
        bytes it found back (the search pool size still applies to this process), so it changes no file."""
        config_file = self.shard_path / "edge_config.json"
        before = config_file.read_bytes() if read_only and config_file.exists() else None
        config = self._load_config() if tier is None or read_only else self._config(tier)
        shard = self.models.EdgeShard.load(str(self.shard_path), config)
        if before is not None and config_file.read_bytes() != before:
            atomic_write(config_file, lambda tmp: Path(tmp).write_bytes(before))
        return shard

    def create(self, shape: Shape, indexes: list[tuple[str, str]]) -> None:
        self._named, self._metric, self._dim = dict(shape.vectors), shape.metric, shape.dim
        self._sparse = list(shape.sparse)
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._shard = HANDLES.acquire(
                self._key,
                lambda: self.models.EdgeShard.create(str(self.shard_path), self._config()),
                lambda sh: sh.close(),
                writer=True,
            )
        except Exception as exc:  # noqa: BLE001
            raise _map_edge_error(exc, self.shard_path) from None
        for key, kind in indexes:
            self.create_field_index(key, kind)
        self._meta = {
            "format_version": 1,
            "dim": shape.dim,
            "metric": shape.metric.value,
            "fingerprint": shape.fingerprint,
            "vector_name": shape.vector_name,
            "vectors": shape.vectors,
            "payload_indexes": shape.payload_indexes or {},
            "hnsw": {"m": self.settings.hnsw_m, "ef_construct": self.settings.hnsw_ef_construct},
            "tier": self.tier.to_meta(),
            "created": now_iso(),
        }
        write_json(self.meta_path, self._meta)

    def _vectors(self, tier: Tier | None = None) -> Any:
        e, t = self.models, tier or self.tier
        dist = {Metric.COSINE: e.Distance.Cosine, Metric.DOT: e.Distance.Dot, Metric.L2: e.Distance.Euclid}[
            self._metric
        ]
        mem = e.Memory.Cold if t.on_disk else None  # on disk: memory-mapped, read on demand
        if self._named:
            return {n: e.EdgeVectorParams(size=d, distance=dist, memory=mem) for n, d in self._named.items()}
        return e.EdgeVectorParams(size=self._dim, distance=dist, memory=mem)

    def _quantization(self, tier: Tier) -> Any:
        """The tier's quantization config (None: none); the quantized vectors stay in RAM when the originals are
        on disk."""
        e, q = self.models, tier.quantization
        mem = e.Memory.Pinned if tier.on_disk else None
        if q == "scalar":
            return e.ScalarQuantizationConfig(type=e.ScalarType.Int8, memory=mem)
        if q == "binary":  # 1-bit codes, queries at 8 bits (asymmetric): better recall at the same size
            return e.BinaryQuantizationConfig(
                memory=mem, query_encoding=e.BinaryQuantizationQueryEncoding.Scalar8Bits
            )
        if q == "product":
            return e.ProductQuantizationConfig(compression=e.CompressionRatio.X16, memory=mem)
        return None

    def _config(self, tier: Tier | None = None) -> Any:
        e, s, t = self.models, self.settings, tier or self.tier
        return e.EdgeConfig(
            vectors=self._vectors(t),
            hnsw_config=e.HnswIndexConfig(
                m=s.hnsw_m,
                ef_construct=s.hnsw_ef_construct,
                full_scan_threshold=s.full_scan_threshold_kb,
                max_indexing_threads=s.indexing_threads,
                memory=e.Memory.Cold if t.on_disk else None,
            ),
            quantization_config=self._quantization(t),
            optimizers=e.EdgeOptimizersConfig(indexing_threshold=s.indexing_threshold_kb),
            sparse_vectors={n: e.EdgeSparseVectorParams(modifier=e.Modifier.Idf) for n in self._sparse} or None,
            max_search_threads=s.search_threads,
            # what a load resolves them to: written now, so that a later open has nothing to add to edge_config.json
            on_disk_payload=True,
            payload_memory=e.Memory.Cold,
        )

    def _load_config(self) -> Any:
        """None (the shard as persisted), or only the search pool size when settings fix it."""
        if self.settings.search_threads is None:
            return None
        return self.models.EdgeConfig(vectors=self._vectors(), max_search_threads=self.settings.search_threads)

    def persisted_tier(self) -> Tier:
        """The tier the shard's own config (edge_config.json) holds: what a load configured."""
        try:
            config = json.loads((self.shard_path / "edge_config.json").read_text())
        except (OSError, ValueError):
            return Tier()
        quant = next(iter(config.get("quantization_config") or {}), "none")
        memory = {v.get("memory") for v in (config.get("vectors") or {}).values()}
        return Tier.from_meta({"quantization": quant, "on_disk": memory == {"cold"}})

    def apply_tier(self, tier: Tier) -> None:
        """Configure this tier unless the shard's load did (reloading it with the tier's config, which needs the
        only handle on it in this process), then record it; the optimize that follows re-quantizes and moves the
        segments."""
        if self.persisted_tier() != tier:
            self._reload(tier)
        self.tier = tier
        meta = json.loads(self.meta_path.read_text())
        meta["tier"] = tier.to_meta()
        write_json(self.meta_path, meta)
        self._meta = meta

    def _reload(self, tier: Tier) -> None:
        if HANDLES.users(self._key) > 1:
            raise StoreLockedError(
                f"Qdrant Edge shard {self.shard_path}: changing its tier to {tier.describe()} reloads it, but other "
                "stores of this process have it open: close them, then build again"
            )
        self.close()
        config = self._config(tier)
        try:
            self._shard = HANDLES.acquire(
                self._key,
                lambda: self.models.EdgeShard.load(str(self.shard_path), config),
                lambda sh: sh.close(),
                check=self._check_count,
                writer=True,
                on_writer=lambda sh: self._forget_count(),
            )
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - Edge raises plain Exception
            raise _map_edge_error(exc, self.shard_path) from None

    # ---- damage checks: a shard that lost segments must not answer from what is left
    def _check_segments(self) -> None:
        seg = self.shard_path / "segments"
        if not seg.is_dir() or not any(p.is_dir() for p in seg.iterdir()):
            raise CorruptIndexError(
                f"Qdrant Edge shard {self.shard_path} has no segments ({seg} is missing or empty): its points "
                f"are gone and a search would answer from the write-ahead log alone; {repair_hint(self.dir, self.name)}"
            )

    def _shard_points(self, shard: Any) -> int:
        return int(shard.count(self.models.CountRequest(exact=True)))

    def _check_count(self, shard: Any) -> None:
        """After a clean close the shard held ``closed_points``: fewer or more now means lost segment files."""
        expected = json.loads(self.meta_path.read_text()).get("closed_points")
        if expected is not None:
            found = self._shard_points(shard)
            if found != expected:
                raise CorruptIndexError(
                    f"Qdrant Edge shard {self.shard_path} holds {found} points but held {expected} when it was "
                    f"last closed: segment files under {self.shard_path / 'segments'} are missing or damaged; "
                    + repair_hint(self.dir, self.name)
                )

    def _forget_count(self) -> None:
        """Open for writing: a crash from here on must leave no stale count behind."""
        meta = json.loads(self.meta_path.read_text())
        if meta.pop("closed_points", None) is not None:
            write_json(self.meta_path, meta)

    def _last_close(self, shard: Any, written: bool) -> None:
        """The last store on the shard closes it; after writes, with the count the next open checks, and settled:
        an empty segment the optimizer left behind holds back the write-ahead log, and the next load would replay
        it into that segment (rewriting its segment.json). One load here does it, so that a reader changes nothing.
        """
        try:
            if written:
                shard.flush()
                meta = json.loads(self.meta_path.read_text())
                meta["closed_points"] = self._shard_points(shard)
                write_json(self.meta_path, meta)
        finally:
            shard.close()
        if written:
            try:
                self.models.EdgeShard.load(str(self.shard_path), self._load_config()).close()
            except Exception as exc:  # noqa: BLE001 - the writes are durable: the next open replays and reports
                log.warning(
                    "Qdrant Edge shard %s: settling the write-ahead log after close failed: %s", self.shard_path, exc
                )

    # ---- engine calls
    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001
                raise _map_edge_error(exc, self.shard_path) from None

    def upsert_points(self, rows: list[PointRow]) -> None:
        e = self.models
        self._call(self._shard.update, e.UpdateOperation.upsert_points([e.Point(*r) for r in rows]))

    def update_vectors(self, rows: list[tuple[str, dict[str, list[float]]]]) -> None:
        e = self.models
        self._call(self._shard.update, e.UpdateOperation.update_vectors([e.PointVectors(p, v) for p, v in rows]))

    def set_payload(self, pid: str, payload: dict[str, Any]) -> None:
        self._call(self._shard.update, self.models.UpdateOperation.set_payload([pid], payload))

    def delete_points(self, pids: list[Any]) -> None:
        self._call(self._shard.update, self.models.UpdateOperation.delete_points(pids))

    def delete_vectors(self, pids: list[Any], vector_name: str) -> None:
        self._call(self._shard.update, self.models.UpdateOperation.delete_vectors(pids, [vector_name]))

    def retrieve(self, pids: list[str], with_payload: bool, with_vector: bool | list[str]) -> list[Any]:
        return list(self._call(self._shard.retrieve, pids, with_payload, with_vector))

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
        e = self.models
        qp = None
        if quant is not None:  # an exact search over the original vectors, else the quantized ones rescored
            qp = (
                e.QuantizationSearchParams(ignore=True)
                if exact
                else e.QuantizationSearchParams(rescore=quant.rescore, oversampling=quant.oversampling)
            )
        sp = e.SearchParams(hnsw_ef=hnsw_ef, exact=exact, quantization=qp)
        reqs = [
            e.QueryRequest(
                limit=limit,
                query=e.Query.Nearest(q.tolist(), using=using),
                filter=flt,
                params=sp,
                with_payload=with_payload,
                with_vector=False,
            )
            for q in queries
        ]
        return list(self._call(self._shard.query_batch, e.QueryBatchRequest(reqs)))

    def count(self, flt: Any) -> int:
        return int(self._call(self._shard.count, self.models.CountRequest(exact=True, filter=flt)))

    def scroll(self, flt: Any, offset: Any, limit: int, with_vector: bool) -> tuple[list[Any], Any]:
        req = self.models.ScrollRequest(
            offset=offset, limit=limit, filter=flt, with_payload=True, with_vector=with_vector
        )
        recs, nxt = self._call(self._shard.scroll, req)
        return list(recs), nxt

    def payload_schema(self) -> set[str]:
        return set(self._call(self._shard.info).payload_schema)

    def create_field_index(self, key: str, kind: str) -> None:
        e = self.models
        schema = {
            "keyword": e.PayloadSchemaType.Keyword,
            "integer": e.PayloadSchemaType.Integer,
            "float": e.PayloadSchemaType.Float,
            "bool": e.PayloadSchemaType.Bool,
        }[kind]
        self._call(self._shard.update, e.UpdateOperation.create_field_index(key, schema))

    def optimize(self) -> bool:
        return bool(self._call(self._shard.optimize))

    def flush(self) -> None:
        self._call(self._shard.flush)

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard = None
                HANDLES.release(self._key, self._last_close)

    def info(self) -> dict[str, Any]:
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


    # ---- sparse named vectors (the keyword leg)
    def sparse_names(self) -> set[str]:
        """The shard's sparse vectors, as its edge_config.json records them (Edge keeps it current)."""
        try:
            config = json.loads((self.shard_path / "edge_config.json").read_text())
        except (OSError, ValueError):
            return set()
        return set(config.get("sparse_vectors") or {})

    def add_sparse(self, name: str) -> None:
        e = self.models
        self._call(self._shard.update, e.UpdateOperation.create_sparse_vector(name, e.Modifier.Idf))

    def sparse_vector(self, indices: list[int], values: list[float]) -> Any:
        return self.models.SparseVector(indices, values)

    def query_sparse(
        self, indices: list[int], values: list[float], using: str, flt: Any, limit: int, with_payload: bool | list[str]
    ) -> list[Any]:
        e = self.models
        req = e.QueryRequest(
            limit=limit,
            query=e.Query.Nearest(e.SparseVector(indices, values), using=using),
            filter=flt,
            params=e.SearchParams(idf=e.IdfParams(corpus=e.Filter(must=[]))),  # IDF over the live points
            with_payload=with_payload,
            with_vector=False,
        )
        return list(self._call(self._shard.query, req))


class QdrantEdgeStore(QdrantStore):
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
        read_only: bool = False,
        sparse: Sequence[str] = (),
    ) -> None:
        self.edge_backend = EdgeBackend(root, name, settings)
        self.dir = self.edge_backend.dir
        self.shard_path = self.edge_backend.shard_path
        self.meta_path = self.edge_backend.meta_path
        super().__init__(
            self.edge_backend,
            name,
            settings,
            dim,
            metric,
            fingerprint,
            vector_name,
            payload_indexes,
            create,
            vectors,
            read_only,
            sparse=sparse,
        )


def dir_bytes(path: Path) -> int:
    """Bytes the files under path really occupy on disk (sparse, preallocated files count what they use)."""
    if not path.exists():
        return 0
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())
