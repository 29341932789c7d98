"""Qdrant through qdrant-client: a server (URL + API key) or local mode (a path or ``:memory:``).

Local mode is qdrant-client's own brute-force numpy engine: it accepts but silently ignores HNSW,
optimizer and quantization settings, payload indexes do nothing, and it slows down above 20,000
points. Use it for small data and congruence checks, never for benchmarks.
``ClientBackend`` makes the engine calls (with retries on a server); ``QdrantStore`` does the rest.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from retrieval.errors import (
    BackendUnavailableError,
    InvalidInputError,
    StoreError,
    StoreLockedError,
    StoreNotFoundError,
)
from retrieval.metric import Metric
from retrieval.settings import QdrantSettings
from retrieval.stores.manifest import now_iso
from retrieval.stores.qdrant_common import PayloadIndexType
from retrieval.stores.qdrant_handles import HANDLES
from retrieval.stores.qdrant_store import PointRow, QdrantBackend, QdrantStore, Shape
from retrieval.stores.qdrant_tier import QuantSearch, Tier

log = logging.getLogger(__name__)
LOCAL_MODE_LIMIT = 20_000
T = TypeVar("T")


def _close_client(client: Any, _written: bool = False) -> None:
    client.close()


def release_client(client: Any) -> None:
    """Close a client from make_client (a local-mode client once its last user releases it)."""
    if not HANDLES.release_handle(client, _close_client):
        client.close()


def make_client(settings: QdrantSettings, root: Path, read_only: bool = False) -> Any:
    """A QdrantClient for server mode (URL) or local mode (path / :memory:); release it with release_client.

    A local-mode folder is opened once per process (qdrant-client locks it) and shared; a read-only caller
    finds an existing folder or gets StoreNotFoundError (nothing is created)."""
    from qdrant_client import QdrantClient

    if settings.mode == "server":
        return QdrantClient(
            url=settings.url,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            timeout=int(settings.timeout_s),
            prefer_grpc=settings.prefer_grpc,
        )
    if settings.mode == "local":
        if settings.path is not None and str(settings.path) == ":memory:":
            return QdrantClient(location=":memory:")
        path = settings.path or root / "qdrant-local"
        if read_only and not (path / "meta.json").exists():
            raise StoreNotFoundError(f"no qdrant-client local storage at {path}")
        path.mkdir(parents=True, exist_ok=True)

        def opener() -> Any:
            try:
                return QdrantClient(path=str(path))
            except RuntimeError as exc:
                raise StoreLockedError(f"qdrant-client local storage {path} is in use: {exc}") from None

        return HANDLES.acquire(HANDLES.key("local", path), opener, _close_client)
    raise InvalidInputError(f"qdrant-client store needs mode server or local, not {settings.mode!r}")


class ClientBackend(QdrantBackend):
    """The engine calls on one collection through a QdrantClient (server: retried on connection errors)."""

    label = "Qdrant"
    edge = False

    def __init__(self, client: Any, name: str, settings: QdrantSettings, owns_client: bool = True) -> None:
        from qdrant_client import models

        self.client = client
        self.name = name
        self.settings = settings
        self.mode = settings.mode
        self.owns_client = owns_client
        self.models = models
        self.kind = "qdrant-server" if settings.mode == "server" else "qdrant-local"
        self.exact_only = settings.mode == "local"  # local mode is always exact
        self.live_idf = settings.mode == "local"  # a server counts deleted points in its IDF until it vacuums them
        self.uses_payload_indexes = settings.mode == "server"  # local mode ignores payload indexes
        self._released = False

    # ---- open / create
    def read_shape(self) -> Shape | None:
        m = self.models
        if not self._retry(lambda: self.client.collection_exists(self.name)):
            return None
        info = self._retry(lambda: self.client.get_collection(self.name))
        meta = dict(info.config.metadata or {}) if getattr(info.config, "metadata", None) else {}
        vparams = info.config.params.vectors
        named = {n: v.size for n, v in vparams.items()} if isinstance(vparams, dict) else {}
        first = next(iter(vparams.values())) if isinstance(vparams, dict) else vparams
        if first is None:
            raise StoreError(f"collection {self.name!r} has no dense vector")
        metric = {m.Distance.COSINE: "cosine", m.Distance.DOT: "dot", m.Distance.EUCLID: "l2"}[first.distance]
        self.tier = Tier.from_meta(meta["tier"]) if "tier" in meta else self._found_tier(info, first)
        return Shape(
            int(first.size), Metric.parse(metric), meta.get("fingerprint"), named, where=Path(self.name) / "collection"
        )

    def _found_tier(self, info: Any, vparams: Any) -> Tier:
        """The tier of a collection made before tiers were recorded: what the server reports (local: none)."""
        qc = getattr(info.config, "quantization_config", None)
        q = "none"
        for name in ("scalar", "binary", "product"):
            if qc is not None and getattr(qc, name, None) is not None:
                q = name
        return Tier(q, bool(getattr(vparams, "on_disk", False)))

    def not_found(self, name: str) -> StoreNotFoundError:
        return StoreNotFoundError(f"no Qdrant collection named {name!r} ({self.mode} mode)")

    def open(self, read_only: bool, tier: Tier | None = None) -> None:
        """The client is connected already (a new tier is made by ``apply_tier`` at the next build)."""

    def create(self, shape: Shape, indexes: list[tuple[str, str]]) -> None:
        m, s = self.models, self.settings
        dist = {Metric.COSINE: m.Distance.COSINE, Metric.DOT: m.Distance.DOT, Metric.L2: m.Distance.EUCLID}[
            shape.metric
        ]
        disk = self.tier.on_disk or None
        vp: Any = m.VectorParams(size=shape.dim, distance=dist, on_disk=disk)
        if shape.vectors:
            vp = {n: m.VectorParams(size=d, distance=dist, on_disk=disk) for n, d in shape.vectors.items()}
        kwargs: dict[str, Any] = {
            "collection_name": self.name,
            "vectors_config": vp,
            "hnsw_config": m.HnswConfigDiff(
                m=s.hnsw_m, ef_construct=s.hnsw_ef_construct, full_scan_threshold=s.full_scan_threshold_kb, on_disk=disk
            ),
            "optimizers_config": m.OptimizersConfigDiff(indexing_threshold=s.indexing_threshold_kb),
            "quantization_config": self._quantization(self.tier),
            "metadata": {
                "fingerprint": shape.fingerprint,
                "created": now_iso(),
                "simlookup": 1,
                "tier": self.tier.to_meta(),
            },
        }
        if shape.sparse:  # the keyword leg's sparse vectors, IDF modifier on
            kwargs["sparse_vectors_config"] = {n: m.SparseVectorParams(modifier=m.Modifier.IDF) for n in shape.sparse}
        if self.mode == "server":
            kwargs["shard_number"] = s.shard_number
            kwargs["replication_factor"] = s.replication_factor
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # local mode warns that it ignores index settings: documented above
            self._retry(lambda: self.client.create_collection(**kwargs))
        for key, kind in indexes:
            self.create_field_index(key, kind)

    def _quantization(self, tier: Tier) -> Any:
        """The tier's quantization config (None: none), quantized vectors kept in RAM."""
        m = self.models
        if tier.quantization == "scalar":
            return m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, always_ram=True))
        if tier.quantization == "binary":
            return m.BinaryQuantization(binary=m.BinaryQuantizationConfig(always_ram=True))
        if tier.quantization == "product":
            return m.ProductQuantization(
                product=m.ProductQuantizationConfig(compression=m.CompressionRatio.X16, always_ram=True)
            )
        return None

    def apply_tier(self, tier: Tier) -> None:
        """A server re-quantizes and moves vectors and graph in the background; local mode, brute force over the
        original vectors whatever the tier, records it only. Both record it in the collection's metadata."""
        m = self.models
        kwargs: dict[str, Any] = {"metadata": {"tier": tier.to_meta()}}
        if self.mode == "server":
            vp = self._retry(lambda: self.client.get_collection(self.name)).config.params.vectors
            names = list(vp) if isinstance(vp, dict) else [""]  # "": the unnamed vector
            kwargs["vectors_config"] = {n: m.VectorParamsDiff(on_disk=tier.on_disk) for n in names}
            kwargs["hnsw_config"] = m.HnswConfigDiff(on_disk=tier.on_disk)
            kwargs["quantization_config"] = self._quantization(tier) or m.Disabled.DISABLED
        self._retry(lambda: self.client.update_collection(self.name, **kwargs))
        self.tier = tier

    def _retry(self, fn: Callable[[], T]) -> T:
        """Call fn with retries and exponential backoff on connection errors; then BackendUnavailableError."""
        attempts = self.settings.retries + 1 if self.settings.mode == "server" else 1
        delay = self.settings.backoff_s
        last: Exception | None = None
        for i in range(attempts):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001
                if not _is_connection_error(exc):
                    raise
                last = exc
                if i + 1 < attempts:
                    log.warning(
                        "Qdrant unreachable (%s); retry %d/%d in %.1fs", type(exc).__name__, i + 1, attempts - 1, delay
                    )
                    time.sleep(delay)
                    delay *= 2
        raise BackendUnavailableError(
            f"Qdrant server {self.settings.url} unreachable after {attempts} attempts: {last}. "
            "Check SIMLOOKUP_QDRANT__URL and that the server runs (docker compose up -d qdrant); "
            "what was written before is kept, and re-running completes the job."
        ) from None

    # ---- engine calls
    def upsert_points(self, rows: list[PointRow]) -> None:
        if self.mode == "local":
            total = self.count(None) + len(rows)
            if total > LOCAL_MODE_LIMIT:
                log.warning(
                    "qdrant-client local mode holds %d points: it is brute force and slows down above %d; "
                    "use SIMLOOKUP_QDRANT__MODE=edge or a server",
                    total,
                    LOCAL_MODE_LIMIT,
                )
        points = [self.models.PointStruct(id=pid, vector=vec, payload=pl) for pid, vec, pl in rows]
        self._retry(
            lambda: self.client.upload_points(
                self.name, points, batch_size=self.settings.upload_batch_size, max_retries=1, wait=True
            )
        )

    def update_vectors(self, rows: list[tuple[str, dict[str, list[float]]]]) -> None:
        pv = [self.models.PointVectors(id=pid, vector=vec) for pid, vec in rows]
        self._retry(lambda: self.client.update_vectors(self.name, points=pv, wait=True))

    def set_payload(self, pid: str, payload: dict[str, Any]) -> None:
        self._retry(partial(self.client.set_payload, self.name, payload=payload, points=[pid], wait=True))

    def delete_points(self, pids: list[Any]) -> None:
        self._retry(lambda: self.client.delete(self.name, self.models.PointIdsList(points=pids), wait=True))

    def delete_vectors(self, pids: list[Any], vector_name: str) -> None:
        sel = self.models.PointIdsList(points=pids)
        self._retry(lambda: self.client.delete_vectors(self.name, [vector_name], sel, wait=True))

    def retrieve(self, pids: list[str], with_payload: bool, with_vector: bool | list[str]) -> list[Any]:
        return list(
            self._retry(
                lambda: self.client.retrieve(self.name, pids, with_payload=with_payload, with_vectors=with_vector)
            )
        )

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
        m = self.models
        qp = None
        if quant is not None:  # an exact search over the original vectors, else the quantized ones rescored
            qp = (
                m.QuantizationSearchParams(ignore=True)
                if exact
                else m.QuantizationSearchParams(rescore=quant.rescore, oversampling=quant.oversampling)
            )
        sp = m.SearchParams(hnsw_ef=hnsw_ef, exact=exact, quantization=qp)
        reqs = [
            m.QueryRequest(query=q.tolist(), using=using, filter=flt, params=sp, limit=limit, with_payload=with_payload)
            for q in queries
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # local mode: "search_params has no effect" (documented above)
            res = self._retry(lambda: self.client.query_batch_points(self.name, reqs))
        return [r.points for r in res]

    def count(self, flt: Any) -> int:
        return int(self._retry(lambda: self.client.count(self.name, count_filter=flt, exact=True)).count)

    def scroll(self, flt: Any, offset: Any, limit: int, with_vector: bool) -> tuple[list[Any], Any]:
        recs, nxt = self._retry(
            partial(
                self.client.scroll,
                self.name,
                scroll_filter=flt,
                limit=limit,
                offset=offset,
                with_payload=True,
                with_vectors=with_vector,
            )
        )
        return list(recs), nxt

    def payload_schema(self) -> set[str]:
        return set(self._retry(lambda: self.client.get_collection(self.name)).payload_schema or {})

    def create_field_index(self, key: str, kind: str) -> None:
        m = self.models
        schema = {
            "keyword": m.PayloadSchemaType.KEYWORD,
            "integer": m.PayloadSchemaType.INTEGER,
            "float": m.PayloadSchemaType.FLOAT,
            "bool": m.PayloadSchemaType.BOOL,
        }[kind]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # local mode: payload indexes do nothing (documented above)
            self._retry(partial(self.client.create_payload_index, self.name, key, schema, wait=True))

    def optimize(self) -> bool:
        """The server builds HNSW in the background and local mode has none: nothing to do."""
        return False

    def flush(self) -> None:
        """Writes use wait=True: acknowledged writes are already durable on the server or local path."""

    def close(self) -> None:
        if self.owns_client and not self._released:
            self._released = True
            release_client(self.client)

    def info(self) -> dict[str, Any]:
        info = self._retry(lambda: self.client.get_collection(self.name))
        out: dict[str, Any] = {
            "engine": "Qdrant server" if self.mode == "server" else "qdrant-client local mode (brute force, no HNSW)",
            "status": str(getattr(info, "status", "")),
            "indexed_vectors": getattr(info, "indexed_vectors_count", None),
            "segments": getattr(info, "segments_count", None),
            "payload_schema": sorted((info.payload_schema or {}).keys()),
        }
        if self.mode == "server":
            p = info.config.params
            out.update(
                hnsw={"m": info.config.hnsw_config.m, "ef_construct": info.config.hnsw_config.ef_construct},
                shard_number=p.shard_number,
                replication_factor=p.replication_factor,
                quantization=str(info.config.quantization_config) if info.config.quantization_config else None,
            )
        return out

    # ---- sparse named vectors (the keyword leg)
    def sparse_names(self) -> set[str]:
        info = self._retry(lambda: self.client.get_collection(self.name))
        return set(info.config.params.sparse_vectors or {})

    def add_sparse(self, name: str) -> None:
        m = self.models
        conf = m.SparseVectorNameConfig(sparse=m.SparseVectorConfig(modifier=m.Modifier.IDF))
        try:
            self._retry(lambda: self.client.create_vector_name(self.name, name, conf, wait=True))
        except BackendUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - a server too old for named-vector creation answers 404
            raise StoreError(
                f"Qdrant ({self.mode} mode) could not add the sparse vector {name!r} to the existing collection "
                f"{self.name!r} ({type(exc).__name__}: {exc}); this needs a Qdrant server that can create vector "
                "names: upgrade it, ingest into a new collection (created with the keyword leg), or leave the "
                "keyword leg out (SIMLOOKUP_KEYWORD__ENABLED=false)"
            ) from None

    def sparse_vector(self, indices: list[int], values: list[float]) -> Any:
        return self.models.SparseVector(indices=indices, values=values)

    def query_sparse(
        self, indices: list[int], values: list[float], using: str, flt: Any, limit: int, with_payload: bool | list[str]
    ) -> list[Any]:
        m = self.models
        params = m.SearchParams(idf=m.IdfCorpusParams(corpus=m.Filter(must=[]))) if self.live_idf else None
        q = m.SparseVector(indices=indices, values=values)
        res = self._retry(
            lambda: self.client.query_points(
                self.name, query=q, using=using, query_filter=flt, limit=limit, search_params=params,
                with_payload=with_payload,
            )
        )
        return list(res.points)

    def snapshot(self) -> str:
        if self.mode != "server":
            raise StoreError("snapshots need a Qdrant server (qdrant-client local mode has none)")
        return str(self._retry(lambda: self.client.create_snapshot(self.name, wait=True)).name)

    def restore(self, snapshot_name: str) -> None:
        if self.mode != "server":
            raise StoreError("snapshots need a Qdrant server (qdrant-client local mode has none)")
        location = f"file:///qdrant/snapshots/{self.name}/{snapshot_name}"
        self._retry(lambda: self.client.recover_snapshot(self.name, location=location, wait=True))


class QdrantClientStore(QdrantStore):
    """A Qdrant collection reached through qdrant-client (server or local mode)."""

    def __init__(
        self,
        client: Any,
        name: str,
        settings: QdrantSettings,
        dim: int | None = None,
        metric: Metric | str = Metric.COSINE,
        fingerprint: str | None = None,
        vector_name: str = "",
        payload_indexes: Mapping[str, PayloadIndexType] | None = None,
        create: bool = True,
        owns_client: bool = True,
        vectors: Mapping[str, int] | None = None,
        read_only: bool = False,
        sparse: Sequence[str] = (),
    ) -> None:
        self.client_backend = ClientBackend(client, name, settings, owns_client)
        self.client = client
        self.mode = settings.mode
        super().__init__(
            self.client_backend,
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

    def snapshot(self) -> str:
        """Create a server-side snapshot of the collection; returns its name (server mode only)."""
        self._check_open()
        return self.client_backend.snapshot()

    def restore(self, snapshot_name: str) -> None:
        """Restore the collection from one of its snapshots on the server."""
        self._check_open()
        self._check_writable("restore")
        self.client_backend.restore(snapshot_name)


def _is_connection_error(exc: Exception) -> bool:
    names = {type(e).__name__ for e in _chain(exc)}
    conn = {
        "ConnectError",
        "ConnectTimeout",
        "ReadTimeout",
        "RemoteProtocolError",
        "ConnectionError",
        "ConnectionRefusedError",
        "ResponseHandlingException",
        "WriteTimeout",
        "PoolTimeout",
        "ReadError",
    }
    if names & conn:
        return True
    try:
        import grpc

        return isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE
    except ImportError:
        return False


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out
