"""Qdrant through qdrant-client: a server (URL + API key) or local mode (a path or ``:memory:``).

Local mode is qdrant-client's own brute-force numpy engine: it accepts but silently ignores HNSW,
optimizer and quantization settings, payload indexes do nothing, and it slows down above 20,000
points. Use it for small data and congruence checks, never for benchmarks.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from retrieval.errors import (
    BackendUnavailableError,
    InvalidInputError,
    StoreError,
    StoreLockedError,
    StoreNotFoundError,
)
from retrieval.filters import Filter
from retrieval.metric import Metric
from retrieval.settings import QdrantSettings
from retrieval.stores.base import Hit, Payload, SearchParams, VectorStore
from retrieval.stores.manifest import check_expected, now_iso
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

log = logging.getLogger(__name__)
LOCAL_MODE_LIMIT = 20_000
T = TypeVar("T")


_LOCAL: dict[str, list[Any]] = {}  # local-mode path → [client, users]: one client per folder (it locks it)


def release_client(client: Any) -> None:
    """Close a client from make_client (local-mode clients once their last user releases them)."""
    for key, entry in list(_LOCAL.items()):
        if entry[0] is client:
            entry[1] -= 1
            if entry[1] == 0:
                del _LOCAL[key]
                client.close()
            return
    client.close()


def make_client(settings: QdrantSettings, root: Path) -> Any:
    """A QdrantClient for server mode (URL) or local mode (path / :memory:)."""
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
        path.mkdir(parents=True, exist_ok=True)
        key = str(path.resolve())
        if key in _LOCAL:
            _LOCAL[key][1] += 1
            return _LOCAL[key][0]
        try:
            client = QdrantClient(path=str(path))
        except RuntimeError as exc:
            raise StoreLockedError(f"qdrant-client local storage {path} is in use: {exc}") from None
        _LOCAL[key] = [client, 1]
        return client
    raise InvalidInputError(f"qdrant-client store needs mode server or local, not {settings.mode!r}")


class QdrantClientStore(NamedVectorView, VectorStore):
    """A Qdrant collection reached through qdrant-client (server or local mode)."""

    backend: ClassVar[str] = "qdrant"

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
    ) -> None:
        try:
            payload_indexes = check_payload_indexes(payload_indexes)  # before anything is created
        except InvalidInputError:
            if owns_client:
                release_client(client)
            raise
        from qdrant_client import models as m

        self.client = client
        self.settings = settings
        self.owns_client = owns_client
        self.mode = settings.mode
        self.backend = "qdrant-server" if settings.mode == "server" else "qdrant-local"  # type: ignore[misc]
        if self._retry(lambda: client.collection_exists(name)):
            info = self._retry(lambda: client.get_collection(name))
            meta = dict(info.config.metadata or {}) if getattr(info.config, "metadata", None) else {}
            vparams = info.config.params.vectors
            named = {n: v.size for n, v in vparams.items()} if isinstance(vparams, dict) else {}
            vector_name = self.set_view(named, vector_name, name, StoreError)
            vp = vparams.get(vector_name) if isinstance(vparams, dict) else vparams
            if vp is None:
                raise StoreError(f"collection {name!r} has no vector named {vector_name!r}")
            found_metric = {m.Distance.COSINE: "cosine", m.Distance.DOT: "dot", m.Distance.EUCLID: "l2"}[vp.distance]
            actual = {"dim": vp.size, "metric": found_metric, "fingerprint": meta.get("fingerprint")}
            check_expected(
                actual,
                Path(name) / "collection",
                dim=dim,
                metric=Metric.parse(metric).value if dim is not None else None,
                fingerprint=fingerprint if meta.get("fingerprint") else None,
            )
            super().__init__(name, int(vp.size), Metric.parse(found_metric), meta.get("fingerprint"))
        else:
            if not create:
                raise StoreNotFoundError(f"no Qdrant collection named {name!r} ({settings.mode} mode)")
            if dim is None:
                raise InvalidInputError("creating a Qdrant collection needs its dimension")
            super().__init__(name, dim, Metric.parse(metric), fingerprint)
            self.set_view(
                dict(vectors or ({vector_name: dim} if vector_name else {})), vector_name, name, InvalidInputError
            )
            self._create(m, {**settings.payload_indexes, **(payload_indexes or {})})

    def _create(self, m: Any, payload_indexes: dict[str, PayloadIndexType]) -> None:
        s = self.settings
        dist = {Metric.COSINE: m.Distance.COSINE, Metric.DOT: m.Distance.DOT, Metric.L2: m.Distance.EUCLID}[self.metric]
        vp: Any = m.VectorParams(size=self.dim, distance=dist)
        if self.named:
            vp = {n: m.VectorParams(size=d, distance=dist) for n, d in self.named.items()}
        quant: Any = None
        if s.quantization == "scalar":
            quant = m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, always_ram=True))
        elif s.quantization == "product":
            quant = m.ProductQuantization(
                product=m.ProductQuantizationConfig(compression=m.CompressionRatio.X16, always_ram=True)
            )
        kwargs: dict[str, Any] = {
            "collection_name": self.name,
            "vectors_config": vp,
            "hnsw_config": m.HnswConfigDiff(
                m=s.hnsw_m, ef_construct=s.hnsw_ef_construct, full_scan_threshold=s.full_scan_threshold_kb
            ),
            "optimizers_config": m.OptimizersConfigDiff(indexing_threshold=s.indexing_threshold_kb),
            "quantization_config": quant,
            "metadata": {"fingerprint": self.fingerprint, "created": now_iso(), "simlookup": 1},
        }
        if self.mode == "server":
            kwargs["shard_number"] = s.shard_number
            kwargs["replication_factor"] = s.replication_factor
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # local mode warns that it ignores index settings: documented above
            self._retry(lambda: self.client.create_collection(**kwargs))
        self._create_indexes(payload_indexes)

    def _create_indexes(self, wanted: Mapping[str, PayloadIndexType]) -> None:
        """Create the payload indexes not there yet (field → keyword | integer | float | bool)."""
        from qdrant_client import models as m

        if not wanted:
            return
        schema = {
            "keyword": m.PayloadSchemaType.KEYWORD,
            "integer": m.PayloadSchemaType.INTEGER,
            "float": m.PayloadSchemaType.FLOAT,
            "bool": m.PayloadSchemaType.BOOL,
        }
        have = set(self._retry(lambda: self.client.get_collection(self.name)).payload_schema or {})
        for field, kind in wanted.items():
            key = index_key(field)
            if key is None or key in have or field in have:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # local mode: payload indexes do nothing (documented above)
                self._retry(
                    partial(self.client.create_payload_index, self.name, key, schema[INDEX_SCHEMA[kind]], wait=True)
                )

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

    # ---- hooks ----
    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[Payload]) -> int:
        from qdrant_client import models as m

        if self.mode == "local":
            total = self._count() + len(ids)
            if total > LOCAL_MODE_LIMIT:
                log.warning(
                    "qdrant-client local mode holds %d points: it is brute force and slows down above %d; "
                    "use SIMLOOKUP_QDRANT__MODE=edge or a server",
                    total,
                    LOCAL_MODE_LIMIT,
                )

        def existing(pids: list[str]) -> set[str]:
            recs = self._retry(lambda: self.client.retrieve(self.name, pids, with_payload=False, with_vectors=False))
            return {str(r.id) for r in recs}

        def insert(rows: list[PointRow]) -> None:
            points = [m.PointStruct(id=pid, vector=vec, payload=pl) for pid, vec, pl in rows]
            self._retry(
                lambda: self.client.upload_points(
                    self.name, points, batch_size=self.settings.upload_batch_size, max_retries=1, wait=True
                )
            )

        def update(rows: list[PointRow]) -> None:
            pv = [m.PointVectors(id=pid, vector=vec) for pid, vec, _ in rows]
            self._retry(lambda: self.client.update_vectors(self.name, points=pv, wait=True))
            for pid, _, pl in rows:
                self._retry(partial(self.client.set_payload, self.name, payload=pl, points=[pid], wait=True))

        return self.upsert_view(ids, vectors, payloads, existing, insert, update)

    def _view_filter(self) -> Any:
        from qdrant_client import models as m

        return m.Filter(must=[m.HasVectorCondition(has_vector=self.vector_name)]) if self.multi else None

    def _delete(self, ids: list[str]) -> int:
        from qdrant_client import models as m

        def retrieve(pids: list[str], with_vector: bool) -> list[Any]:
            vec: Any = [self.vector_name] if with_vector else False
            return self._retry(lambda: self.client.retrieve(self.name, pids, with_payload=False, with_vectors=vec))

        def delete_points(pids: list[Any]) -> None:
            self._retry(lambda: self.client.delete(self.name, m.PointIdsList(points=pids), wait=True))

        def delete_vectors(pids: list[Any]) -> None:
            sel = m.PointIdsList(points=pids)
            self._retry(lambda: self.client.delete_vectors(self.name, [self.vector_name], sel, wait=True))

        return self.delete_view(ids, retrieve, delete_points, delete_vectors)

    def _search(
        self, queries: np.ndarray, k: int, flt: Filter | None, params: SearchParams, with_payload: bool = True
    ) -> list[list[Hit]]:
        from qdrant_client import models as m

        qf = to_qdrant_filter(flt, m, fallback=python_fallback(self._scroll))
        quant = None
        if self.settings.quantization != "none":
            quant = m.QuantizationSearchParams(rescore=True, oversampling=float(max(params.rerank or 2, 1)))

        def run(rows: np.ndarray, exact: bool) -> list[list[Hit]]:
            sp = m.SearchParams(hnsw_ef=params.hnsw_ef or self.settings.hnsw_ef, exact=exact, quantization=quant)
            reqs = [
                m.QueryRequest(
                    query=q.tolist(), using=self.vector_name or None, filter=qf, params=sp, limit=k, with_payload=True
                )
                for q in rows
            ]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # local mode: "search_params has no effect" (documented above)
                res = self._retry(lambda: self.client.query_batch_points(self.name, reqs))
            return [to_hits(r.points) for r in res]

        hits = run(queries, params.exact)
        if qf is None or params.exact or self.mode == "local":  # local mode is always exact
            return hits
        # HNSW with a filter can stop short (a selective filter on an unindexed field): top up exactly
        return top_up(hits, k, lambda: self._count_matching(qf), lambda rows: run(queries[rows], True))

    def _count_matching(self, qf: Any) -> int:
        from qdrant_client import models as m

        view = self._view_filter()
        flt = qf if view is None else m.Filter(must=[qf, view])
        return int(self._retry(lambda: self.client.count(self.name, count_filter=flt, exact=True)).count)

    def _count(self) -> int:
        flt = self._view_filter()
        return int(self._retry(lambda: self.client.count(self.name, count_filter=flt, exact=True)).count)

    def _scroll(self, with_vectors: bool = False) -> list[Any]:
        out: list[Any] = []
        offset = None
        while True:
            recs, offset = self._retry(
                partial(
                    self.client.scroll,
                    self.name,
                    scroll_filter=self._view_filter(),
                    limit=2048,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
            )
            out.extend(recs)
            if offset is None:
                return out

    def _ids(self) -> set[str]:
        return {split_id(r.payload)[0] for r in self._scroll()}

    def _fetch(self, ids: list[str]) -> dict[str, tuple[np.ndarray | None, Payload]]:
        recs = self._retry(
            lambda: self.client.retrieve(self.name, [point_id(i) for i in ids], with_payload=True, with_vectors=True)
        )
        return to_entries(recs, self.vector_name)

    def build(self) -> bool:
        """Index the payload fields (declared, and inferred from the payloads unless auto_payload_indexes is off).

        The server builds HNSW in the background and local mode has no index: returns False."""
        self._check_open()
        wanted = dict(self.settings.payload_indexes)
        if self.settings.auto_payload_indexes and self.mode == "server":
            wanted = {**infer_payload_schema(r.payload or {} for r in self._scroll()), **wanted}
        self._create_indexes(wanted)
        return False

    def snapshot(self) -> str:
        """Create a server-side snapshot of the collection; returns its name (server mode only)."""
        self._check_open()
        if self.mode != "server":
            raise StoreError("snapshots need a Qdrant server (qdrant-client local mode has none)")
        desc = self._retry(lambda: self.client.create_snapshot(self.name, wait=True))
        return str(desc.name)

    def restore(self, snapshot_name: str) -> None:
        """Restore the collection from one of its snapshots on the server."""
        self._check_open()
        if self.mode != "server":
            raise StoreError("snapshots need a Qdrant server (qdrant-client local mode has none)")
        location = f"file:///qdrant/snapshots/{self.name}/{snapshot_name}"
        self._retry(lambda: self.client.recover_snapshot(self.name, location=location, wait=True))

    def _flush(self) -> None:
        """Writes use wait=True: acknowledged writes are already durable on the server or local path."""

    def _close(self) -> None:
        if self.owns_client:
            release_client(self.client)

    def _info(self) -> dict[str, Any]:
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
