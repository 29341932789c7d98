"""Benchmark engines: each is a configure / upload / index / search set over one built store.

The base class owns timing and batching; adapters only talk to their engine. Every engine answers the same
query twice: through simlookup's store (the layer users call) and through the raw engine call, so the layer's
own overhead can be printed as a ratio.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import SearchParams, VectorStore, open_store
from retrieval.stores.qdrant_edge_store import dir_bytes


@dataclass(frozen=True)
class BuildConfig:
    """Build parameters of one index (ann-benchmarks: apart from query parameters)."""

    label: str
    engine: str  # "faiss" | "qdrant-edge" | "qdrant-server"
    kind: str  # flat | ivf | ivfpq | hnsw | qdrant
    params: dict[str, Any] = field(default_factory=dict)
    sweep: tuple[dict[str, Any], ...] = ({},)  # query parameter sets


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


class Engine(ABC):
    """One built index under test."""

    def __init__(self, cfg: BuildConfig, root: Path, dim: int, metric: str) -> None:
        self.cfg = cfg
        self.root = root
        self.dim = dim
        self.metric = metric
        self.timings: dict[str, float] = {}
        self.rss_growth = 0
        self.store: VectorStore | None = None
        self._pos: dict[str, int] = {}

    # ---- timed by the base ----
    def build(self, ids: list[str], xb: np.ndarray, batch: int = 4096) -> None:
        """configure → upload (batched) → index, each timed; resident memory growth recorded."""
        self._pos = {pid: i for i, pid in enumerate(ids)}
        rss0 = _rss()
        t0 = time.perf_counter()
        self.configure()
        t1 = time.perf_counter()
        for i in range(0, len(ids), batch):
            self.upload(ids[i : i + batch], xb[i : i + batch])
        t2 = time.perf_counter()
        self.index()
        t3 = time.perf_counter()
        self.timings = {"configure_s": t1 - t0, "upload_s": t2 - t1, "index_s": t3 - t2, "total_s": t3 - t0}
        self.rss_growth = max(0, _rss() - rss0)

    def search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> np.ndarray:
        """Layer search → (nq, k) int positions (-1 where fewer hits)."""
        assert self.store is not None
        res = self.store.search(q, k, params=SearchParams(**qp))
        out = np.full((len(q), k), -1, dtype=np.int64)
        for i, hits in enumerate(res):
            for j, h in enumerate(hits[:k]):
                out[i, j] = self._pos[h.id]
        return out

    # ---- adapter hooks ----
    @abstractmethod
    def configure(self) -> None: ...

    def upload(self, ids: list[str], xb: np.ndarray) -> None:
        assert self.store is not None
        self.store.upsert(ids, xb, batch_size=len(ids))

    def index(self) -> None:
        assert self.store is not None
        self.store.build()
        self.store.flush()

    @abstractmethod
    def raw_search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> Any:
        """The same search through the bare engine call."""

    @abstractmethod
    def disk_bytes(self) -> int: ...

    @abstractmethod
    def ram_bytes(self) -> int:
        """What the index keeps in RAM to answer queries."""

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


class FaissEngine(Engine):
    """A simlookup FAISS store; the raw call is ``index.search`` with the same search parameters."""

    def configure(self) -> None:
        s = Settings(data_dir=self.root)
        self.store = open_store(s, "bench", self.cfg.kind, dim=self.dim, metric=self.metric, **self.cfg.params)

    def raw_search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> Any:
        return self.store.raw_search(q, k, SearchParams(**{**qp, "rerank": None}))  # type: ignore[union-attr]

    def disk_bytes(self) -> int:
        info = self.store.info()  # type: ignore[union-attr]
        return int(info["index_bytes"])

    def ram_bytes(self) -> int:
        return self.store.memory_bytes()  # type: ignore[union-attr]


class QdrantEdgeEngine(Engine):
    """Qdrant Edge in-process; the raw call is ``EdgeShard.query_batch`` / ``query``."""

    def configure(self) -> None:
        q = QdrantSettings(
            mode="edge",
            hnsw_m=self.cfg.params.get("m", 16),
            hnsw_ef_construct=self.cfg.params.get("ef_construct", 100),
            full_scan_threshold_kb=self.cfg.params.get("full_scan_threshold_kb", 10),
        )
        self.store = open_store(
            Settings(data_dir=self.root, qdrant=q), "bench", "qdrant", dim=self.dim, metric=self.metric
        )

    def raw_search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> Any:
        import qdrant_edge as e

        sp = e.SearchParams(hnsw_ef=qp.get("hnsw_ef"), exact=bool(qp.get("exact", False)))
        reqs = [e.QueryRequest(limit=k, query=e.Query.Nearest(v.tolist()), params=sp, with_payload=True) for v in q]
        shard = self.store._shard  # type: ignore[union-attr]  # noqa: SLF001 - the raw engine on purpose
        if len(reqs) == 1:
            return shard.query(reqs[0])
        return shard.query_batch(e.QueryBatchRequest(reqs))

    def disk_bytes(self) -> int:
        return dir_bytes(self.store.dir)  # type: ignore[union-attr]

    def ram_bytes(self) -> int:
        return self.rss_growth


class QdrantServerEngine(Engine):
    """A Qdrant server (when SIMLOOKUP_QDRANT__URL is configured); the raw call is ``query_batch_points``."""

    def __init__(self, cfg: BuildConfig, root: Path, dim: int, metric: str, qsettings: QdrantSettings) -> None:
        super().__init__(cfg, root, dim, metric)
        self.qsettings = qsettings

    def configure(self) -> None:
        import uuid

        q = self.qsettings.model_copy(
            update={
                "hnsw_m": self.cfg.params.get("m", 16),
                "hnsw_ef_construct": self.cfg.params.get("ef_construct", 100),
            }
        )
        self.name = f"bench-{uuid.uuid4().hex[:8]}"
        self.store = open_store(
            Settings(data_dir=self.root, qdrant=q), self.name, "qdrant", dim=self.dim, metric=self.metric
        )

    def index(self) -> None:
        client = self.store.client  # type: ignore[union-attr]
        while str(client.get_collection(self.name).status).lower().endswith("green") is False:
            time.sleep(0.5)

    def raw_search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> Any:
        from qdrant_client import models as m

        sp = m.SearchParams(hnsw_ef=qp.get("hnsw_ef"), exact=bool(qp.get("exact", False)))
        reqs = [m.QueryRequest(query=v.tolist(), params=sp, limit=k, with_payload=True) for v in q]
        return self.store.client.query_batch_points(self.name, reqs)  # type: ignore[union-attr]

    def disk_bytes(self) -> int:
        return -1  # on the server's disk

    def ram_bytes(self) -> int:
        return -1

    def close(self) -> None:
        if self.store is not None:
            self.store.client.delete_collection(self.name)  # type: ignore[union-attr]
        super().close()
