"""Benchmark engines: configure / upload / index, then a layer search and a raw engine search.

The layer search is simlookup's public ``VectorStore`` API, the call users make. The raw search is the bare
engine on the same index, opened by the benchmark itself (never through a store's private attributes):
FAISS reads the ``index.faiss`` the store wrote; Qdrant Edge loads a byte copy of the store's shard; a Qdrant
server is queried with its own client. The runner owns timing; engines only talk to their engine.
"""

from __future__ import annotations

import shutil
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import Hit, SearchParams, VectorStore, open_store

STORE_NAME = "bench"
# the keys of a store's info() that are build parameters as the store resolved them (results.json's resolved_build)
RESOLVED_KEYS = ("kind", "params", "nlist", "trained", "held_out", "code_limit", "hnsw", "tier", "engine", "metric")


@dataclass(frozen=True)
class BuildConfig:
    """Build parameters of one index (ann-benchmarks: apart from query parameters)."""

    label: str
    engine: str  # "faiss" | "qdrant-edge" | "qdrant-server"
    kind: str  # flat | ivf | ivfpq | hnsw | ivf_sq8 | hnsw_sq8 | qdrant
    params: dict[str, Any] = field(default_factory=dict)
    sweep: tuple[dict[str, Any], ...] = ({},)  # query parameter sets, cheapest first


class Engine(ABC):
    """One index under test, built in its own folder ``root`` (so every file in it belongs to it)."""

    def __init__(self, cfg: BuildConfig, root: Path, dim: int, metric: str, threads: int = 1) -> None:
        self.cfg = cfg
        self.root = root
        self.dim = dim
        self.metric = metric
        self.threads = threads
        self.timings: dict[str, Any] = {}
        self.store: VectorStore | None = None

    # ---- the settings the store is opened with (also used by the memory probe's fresh process) ----
    @abstractmethod
    def settings(self) -> Settings: ...

    def index_name(self) -> str:
        return self.cfg.kind

    def build_overrides(self) -> dict[str, Any]:
        return {}

    def open(self, create: bool = True) -> VectorStore:
        """Open the store through the public API (create it, or reopen what was built)."""
        return open_store(
            self.settings(),
            STORE_NAME,
            self.index_name(),
            dim=self.dim if create else None,
            metric=self.metric,
            create=create,
            **(self.build_overrides() if create else {}),
        )

    # ---- build, timed here ----
    def build(self, ids: list[str], xb: np.ndarray, payloads: list[dict[str, Any]] | None, batch: int = 4096) -> None:
        """configure → upload (batched) → index, each timed where the work happens."""
        t0 = time.perf_counter()
        self.store = self.open(create=True)
        t1 = time.perf_counter()
        for i in range(0, len(ids), batch):
            self.store.upsert(ids[i : i + batch], xb[i : i + batch], payloads[i : i + batch] if payloads else None)
        t2 = time.perf_counter()
        did = self.store.build()
        self.store.flush()
        t3 = time.perf_counter()
        self.timings = {
            "configure_s": t1 - t0,
            "upload_s": t2 - t1,
            "index_s": t3 - t2,
            "total_s": t3 - t0,
            "build_did_work": bool(did),
        }

    # ---- search ----
    def search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> list[list[Hit]]:
        """The layer: simlookup's public search (validation, payloads, string ids)."""
        assert self.store is not None
        return self.store.search(q, k, params=SearchParams(**qp))

    def open_no_payload(self) -> bool:
        """Whether the layer's payload-free path can be timed (a store is open)."""
        return self.store is not None

    def no_payload_search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> list[list[Hit]]:
        """The layer without payloads (``with_payload=False``): ids and scores, as Qdrant's option."""
        assert self.store is not None
        return self.store.search(q, k, params=SearchParams(**qp), with_payload=False)

    def open_raw(self) -> bool:
        """Open the bare engine on the built index; False when there is none to compare with."""
        return False

    def raw_search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> Any:
        """The same search through the bare engine call."""
        raise NotImplementedError

    def raw_note(self, qp: dict[str, Any]) -> str | None:
        """What the raw call leaves out, where it is not the same work."""
        return None

    def thread_record(self) -> dict[str, Any]:
        """The threads the engine was really given (read back from the engine where it can tell)."""
        return {}

    def exact_topups(self) -> int:
        """Queries the layer has answered by exact search because the index returned fewer than k hits
        (FAISS IVF at a small nprobe); 0 for engines that return what their index finds."""
        stats = getattr(self.store, "stats", None)
        return int(stats.get("topup", 0)) if stats is not None else 0

    def resolved_build(self) -> dict[str, Any]:
        """Every build parameter the built store resolved (FAISS: its params and the nlist it chose for the point
        count, held-out points and code limit; Qdrant: the HNSW config and the memory tier): its info() without
        counters, sizes and paths."""
        if self.store is None:
            return {}
        info = self.store.info()
        return {k: info[k] for k in RESOLVED_KEYS if k in info}

    def close(self) -> None:
        """Close the layer store and the raw engine (the store's files stay for disk and memory)."""
        if self.store is not None:
            self.store.close()
            self.store = None


class FaissEngine(Engine):
    """A simlookup FAISS store; the raw call is ``index.search`` on the store's own ``index.faiss``."""

    def __init__(self, cfg: BuildConfig, root: Path, dim: int, metric: str, threads: int = 1) -> None:
        super().__init__(cfg, root, dim, metric, threads)
        self.raw: Any = None
        self._xb: np.ndarray | None = None

    def settings(self) -> Settings:
        return Settings(data_dir=self.root)

    def build_overrides(self) -> dict[str, Any]:
        return dict(self.cfg.params)

    def build(self, ids: list[str], xb: np.ndarray, payloads: list[dict[str, Any]] | None, batch: int = 4096) -> None:
        self._xb = xb
        super().build(ids, xb, payloads, batch)
        if self.cfg.kind == "hnsw" and not self.timings["build_did_work"]:
            # the FAISS store inserts into the HNSW graph on upsert: the graph build is inside upload_s.
            self.timings["graph_built_during_upload"] = True

    def open_raw(self) -> bool:
        import faiss

        files = sorted(self.root.rglob("index.faiss"))
        if len(files) == 1:
            self.raw = faiss.read_index(str(files[0]))
            return True
        if self.cfg.kind == "flat" and self._xb is not None:
            # a flat store that answers from its vector file, with no index.faiss: the raw engine is faiss's own
            # brute force over the same vectors, built here
            xb = np.ascontiguousarray(self._xb, dtype=np.float32)
            if self.metric == "cosine":
                xb = xb / np.linalg.norm(xb, axis=1, keepdims=True)
            self.raw = faiss.IndexFlatL2(self.dim) if self.metric == "l2" else faiss.IndexFlatIP(self.dim)
            self.raw.add(xb)
            self.timings["raw_baseline"] = "faiss IndexFlat built by the benchmark"
            return True
        return False

    def _params(self, k: int, qp: dict[str, Any]) -> Any:
        import faiss

        if self.cfg.kind in ("ivf", "ivfpq", "ivf_sq8"):
            # faiss's Python wrapper takes the fields as keyword arguments; its stubs declare only __init__(self)
            return faiss.SearchParametersIVF(nprobe=int(qp.get("nprobe") or 16))  # type: ignore[call-arg]
        if self.cfg.kind in ("hnsw", "hnsw_sq8"):
            # present at run time, missing from faiss's stubs
            return faiss.SearchParametersHNSW(efSearch=max(int(qp.get("hnsw_ef") or 64), k))  # type: ignore[attr-defined]
        return None

    def raw_search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> Any:
        return self.raw.search(q, k, params=self._params(k, qp))

    def thread_record(self) -> dict[str, Any]:
        import faiss

        return {"omp_max_threads": faiss.omp_get_max_threads()}

    def raw_note(self, qp: dict[str, Any]) -> str | None:
        if (qp.get("rerank") or 0) > 1:
            return f"raw call is the {'PQ' if self.cfg.kind == 'ivfpq' else 'index'} search without the exact re-rank"
        return None

    def close(self) -> None:
        self.raw = None
        self._xb = None
        super().close()


def _shard_dir(path: Path) -> Path | None:
    """The Qdrant Edge shard folder (the one holding ``segments/``) under a store's path."""
    for d in [path, *sorted(p for p in path.rglob("*") if p.is_dir())]:
        if (d / "segments").is_dir():
            return d
    return None


class QdrantEdgeEngine(Engine):
    """Qdrant Edge in-process; the raw call is ``EdgeShard.query`` / ``query_batch`` on a copy of the shard."""

    def __init__(self, cfg: BuildConfig, root: Path, dim: int, metric: str, threads: int = 1) -> None:
        super().__init__(cfg, root, dim, metric, threads)
        self.raw: Any = None
        self.raw_dir = root.parent / f"{root.name}-raw"

    def settings(self) -> Settings:
        q = QdrantSettings(
            mode="edge",
            hnsw_m=self.cfg.params.get("m", 16),
            hnsw_ef_construct=self.cfg.params.get("ef_construct", 100),
            full_scan_threshold_kb=self.cfg.params.get("full_scan_threshold_kb", 10),
            indexing_threshold_kb=self.cfg.params.get("indexing_threshold_kb", 10),
            search_threads=self.threads,
            indexing_threads=self.threads,
        )
        return Settings(data_dir=self.root, qdrant=q)

    def index_name(self) -> str:
        return "qdrant"

    def open_raw(self) -> bool:
        import qdrant_edge as e

        assert self.store is not None
        path = Path(self.store.info()["path"])
        self.store.close()  # a shard opens once: copy it closed, then reopen the layer on the original
        shard = _shard_dir(path)
        if shard is None:
            self.store = self.open(create=False)
            return False
        shutil.rmtree(self.raw_dir, ignore_errors=True)
        shutil.copytree(shard, self.raw_dir)
        self.store = self.open(create=False)
        dist = {"cosine": e.Distance.Cosine, "dot": e.Distance.Dot, "l2": e.Distance.Euclid}[self.metric]
        cfg = e.EdgeConfig(vectors=e.EdgeVectorParams(size=self.dim, distance=dist), max_search_threads=self.threads)
        self.raw = e.EdgeShard.load(str(self.raw_dir), cfg)
        return True

    def thread_record(self) -> dict[str, Any]:
        """max_search_threads and max_indexing_threads as persisted in the shard's edge_config.json."""
        import json

        for f in self.root.rglob("edge_config.json"):
            cfg = json.loads(f.read_text())
            return {
                "max_search_threads": cfg.get("max_search_threads"),
                "max_indexing_threads": (cfg.get("hnsw_config") or {}).get("max_indexing_threads"),
            }
        return {"max_search_threads": "unknown"}

    def raw_search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> Any:
        import qdrant_edge as e

        sp = e.SearchParams(hnsw_ef=qp.get("hnsw_ef"), exact=bool(qp.get("exact", False)))
        reqs = [
            e.QueryRequest(limit=k, query=e.Query.Nearest(v.tolist()), params=sp, with_payload=True, with_vector=False)
            for v in q
        ]
        if len(reqs) == 1:
            return self.raw.query(reqs[0])
        return self.raw.query_batch(e.QueryBatchRequest(reqs))

    def close(self) -> None:
        if self.raw is not None:
            self.raw.close()
            self.raw = None
        shutil.rmtree(self.raw_dir, ignore_errors=True)
        super().close()


class QdrantServerEngine(Engine):
    """A Qdrant server (SIMLOOKUP_QDRANT__URL); the raw call is ``query_batch_points`` with the benchmark's client."""

    def __init__(
        self, cfg: BuildConfig, root: Path, dim: int, metric: str, qsettings: QdrantSettings, threads: int = 1
    ) -> None:
        super().__init__(cfg, root, dim, metric, threads)
        import uuid

        self.qsettings = qsettings.model_copy(
            update={
                "hnsw_m": cfg.params.get("m", 16),
                "hnsw_ef_construct": cfg.params.get("ef_construct", 100),
            }
        )
        self.name = f"bench-{uuid.uuid4().hex[:8]}"
        self.client: Any = None

    def settings(self) -> Settings:
        return Settings(data_dir=self.root, qdrant=self.qsettings)

    def index_name(self) -> str:
        return "qdrant"

    def open(self, create: bool = True) -> VectorStore:
        return open_store(self.settings(), self.name, "qdrant", dim=self.dim if create else None, metric=self.metric)

    def build(self, ids: list[str], xb: np.ndarray, payloads: list[dict[str, Any]] | None, batch: int = 4096) -> None:
        super().build(ids, xb, payloads, batch)
        t0 = time.perf_counter()
        assert self.store is not None
        while not str(self.store.info().get("status", "")).lower().endswith("green"):
            time.sleep(0.5)  # the server indexes in the background: wait, and book it as index time
        waited = time.perf_counter() - t0
        self.timings["index_s"] += waited
        self.timings["total_s"] += waited

    def open_raw(self) -> bool:
        from retrieval.stores.qdrant_client_store import make_client

        self.client = make_client(self.qsettings, self.root)
        return True

    def raw_search(self, q: np.ndarray, k: int, qp: dict[str, Any]) -> Any:
        from qdrant_client import models as m

        sp = m.SearchParams(hnsw_ef=qp.get("hnsw_ef"), exact=bool(qp.get("exact", False)))
        reqs = [m.QueryRequest(query=v.tolist(), params=sp, limit=k, with_payload=True) for v in q]
        return self.client.query_batch_points(self.name, reqs)

    def close(self) -> None:
        super().close()
        if self.client is not None:
            self.client.delete_collection(self.name)
            self.client.close()
            self.client = None
