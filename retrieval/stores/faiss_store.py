"""FAISS store: kinds flat, ivf, ivfpq and hnsw over one SQLite sidecar.

Layout under ``<data_dir>/faiss/<name>/<kind>/``: ``index.faiss`` (faiss.write_index, written to a
temporary file and renamed), ``manifest.json`` (format version, fingerprint, dim, metric, kind,
parameters, count, checksum) and ``points.sqlite`` (ids, payloads, float vectors). No pickle.
Filters are a true pre-filter through faiss IDSelector, so a filtered search returns k hits whenever
k points match.
"""

from __future__ import annotations

import fcntl
import logging
import math
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from retrieval.errors import (
    CorruptIndexError,
    InvalidInputError,
    NotTrainedError,
    StoreLockedError,
    StoreNotFoundError,
    UnknownKindError,
)
from retrieval.filters import Filter
from retrieval.metric import Metric, exact_scores, top_k
from retrieval.settings import FaissSettings
from retrieval.stores.base import Hit, Payload, SearchParams, VectorStore
from retrieval.stores.manifest import (
    FORMAT_VERSION,
    atomic_write,
    check_expected,
    now_iso,
    read_manifest,
    sha256_file,
    write_json,
)
from retrieval.stores.sidecar import Sidecar

log = logging.getLogger(__name__)

FAISS_KINDS = ("flat", "ivf", "ivfpq", "hnsw")
EXACT_FILTER_LIMIT = 4096  # a filter matching at most this many points is answered exactly


@dataclass(frozen=True)
class FaissBuildParams:
    """Build parameters, fixed when the store is created (recorded in the manifest)."""

    kind: str
    nlist: int | None = None  # ivf/ivfpq; None → 4·√N at training time
    pq_m: int = 8
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

    def min_train_points(self, n: int | None = None) -> int:
        """How many points training needs (IVF: nlist; PQ: also 2^nbits)."""
        if self.kind not in ("ivf", "ivfpq"):
            return 0
        nlist = self.nlist or (default_nlist(n) if n else 1)
        need = nlist
        if self.kind == "ivfpq":
            need = max(need, 2**self.pq_nbits)
        return need


@dataclass(frozen=True)
class FaissQueryDefaults:
    """Query parameters used when a search does not pass its own."""

    nprobe: int = 16
    ef_search: int = 64
    rerank: int = 10  # ivfpq only

    @classmethod
    def from_settings(cls, s: FaissSettings) -> FaissQueryDefaults:
        return cls(nprobe=s.ivf_nprobe, ef_search=s.hnsw_ef_search, rerank=s.rerank_factor)


def default_nlist(n: int) -> int:
    """The 4·√N rule, at least 1."""
    return max(1, int(round(4 * math.sqrt(max(n, 1)))))


def _faiss() -> Any:
    import faiss

    return faiss


class FaissStore(VectorStore):
    """One FAISS index of one kind, with ids, payloads and vectors in a SQLite sidecar."""

    backend: ClassVar[str] = "faiss"

    def __init__(
        self,
        root: Path,
        name: str,
        build: FaissBuildParams,
        dim: int | None = None,
        metric: Metric | str = Metric.COSINE,
        fingerprint: str | None = None,
        query_defaults: FaissQueryDefaults | None = None,
        create: bool = True,
        read_only: bool = False,
        payload_in_ram: bool = True,
    ) -> None:
        self.dir = root / "faiss" / name / build.kind
        self.index_path = self.dir / "index.faiss"
        self.manifest_path = self.dir / "manifest.json"
        self.sqlite_path = self.dir / "points.sqlite"
        self.kind = build.kind
        self.read_only = read_only
        self.defaults = query_defaults or FaissQueryDefaults()
        self._lock = threading.RLock()
        self._index: Any = None
        self._nlist: int | None = None
        manifest: dict[str, Any] | None = None
        if self.manifest_path.exists():
            manifest = read_manifest(self.manifest_path)
            check_expected(
                manifest,
                self.manifest_path,
                kind=build.kind,
                dim=dim,
                metric=Metric.parse(metric).value if dim is not None else None,
                fingerprint=fingerprint,
            )
            dim = int(manifest["dim"])
            metric = manifest["metric"]
            fingerprint = manifest.get("fingerprint")
            p = manifest["params"]
            build = FaissBuildParams(**p)
        elif not create or read_only:
            raise StoreNotFoundError(f"no FAISS {build.kind} index named {name!r} under {root}")
        elif dim is None:
            raise InvalidInputError("creating a FAISS store needs its dimension")
        super().__init__(name, int(dim), Metric.parse(metric), fingerprint)
        self.params = build
        if build.kind == "ivfpq" and self.dim % build.pq_m:
            raise InvalidInputError(f"ivfpq: pq_m={build.pq_m} must divide the dimension {self.dim}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lockfile = open(self.dir / ".lock", "a+")  # noqa: SIM115 - held for the store's life
        try:
            fcntl.flock(self._lockfile, (fcntl.LOCK_SH if read_only else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise StoreLockedError(f"FAISS store {self.dir} is open for writing in another process") from None
        try:
            self._db = Sidecar(self.sqlite_path, self.dim, read_only=read_only and self.sqlite_path.exists())
            if payload_in_ram:
                self._db.cache_rows()
            self._n = self._db.count()  # cached: the hot search path never counts rows in SQLite
            self._tomb = self._db.tombstones()
            if manifest is not None:
                self._load(manifest)
            else:
                self._created = now_iso()
                self._new_index()
                self._flush()
        except BaseException:
            self._release()
            raise

    # ---- index construction ----
    def _faiss_metric(self) -> int:
        f = _faiss()
        return f.METRIC_L2 if self.metric is Metric.L2 else f.METRIC_INNER_PRODUCT

    def _new_index(self, n_train: int | None = None) -> None:
        """Fresh index; ivf/ivfpq stay None until trained."""
        f = _faiss()
        b = self.params
        if b.kind == "flat":
            self._index = f.IndexIDMap2(f.IndexFlat(self.dim, self._faiss_metric()))
        elif b.kind == "hnsw":
            inner = f.IndexHNSWFlat(self.dim, b.hnsw_m, self._faiss_metric())
            inner.hnsw.efConstruction = b.ef_construction
            self._index = f.IndexIDMap2(inner)
        else:
            self._index = None
            self._nlist = None

    def _train_ivf(self) -> None:
        f = _faiss()
        b = self.params
        n = self._n
        need = b.min_train_points(n)
        if n < need:
            raise NotTrainedError(
                f"{b.kind} index {self.name!r} needs at least {need} points to train "
                f"(nlist={b.nlist or default_nlist(n)}"
                + (f", 2^{b.pq_nbits} PQ centroids" if b.kind == "ivfpq" else "")
                + f"), has {n}"
            )
        nlist = min(b.nlist or default_nlist(n), n)
        quantizer = f.IndexFlat(self.dim, self._faiss_metric())
        if b.kind == "ivf":
            index = f.IndexIVFFlat(quantizer, self.dim, nlist, self._faiss_metric())
        else:
            index = f.IndexIVFPQ(quantizer, self.dim, nlist, b.pq_m, b.pq_nbits, self._faiss_metric())
        max_train = max(256 * nlist, 2**b.pq_nbits * 256 if b.kind == "ivfpq" else 0)
        parts = list(self._db.all_vectors())  # read the sidecar once: train on a sample, add everything
        fids = np.concatenate([p[0] for p in parts])
        xs = np.concatenate([p[1] for p in parts])
        sample = xs if len(xs) <= max_train else xs[np.random.default_rng(0).choice(len(xs), max_train, replace=False)]
        index.train(sample)
        index.quantizer_trains_alone = 0
        index.add_with_ids(xs, fids)
        self._index = index
        self._nlist = nlist
        self._trained_at = n

    def _rebuild(self) -> None:
        """Rebuild the index from the sidecar (after a crash between commit and flush, or compaction)."""
        if self.params.kind in ("ivf", "ivfpq"):
            self._index = None
            if self._n and self._n >= self.params.min_train_points(self._n):
                self._train_ivf()
        else:
            self._new_index()
            for fids, vecs in self._db.all_vectors():
                self._index.add_with_ids(vecs, fids)
        if not self.read_only:
            self._db.write(lambda cur: cur.execute("DELETE FROM tombstones"))
        self._tomb = np.zeros(0, dtype=np.int64)

    def _load(self, manifest: dict[str, Any]) -> None:
        self._created = manifest.get("created", now_iso())
        self._nlist = manifest.get("nlist")
        self._trained_at = manifest.get("trained_at")
        if manifest.get("has_index"):
            if not self.index_path.exists():
                raise CorruptIndexError(f"{self.index_path} is missing but its manifest says it exists")
            actual = sha256_file(self.index_path)
            if actual != manifest.get("checksum"):
                raise CorruptIndexError(
                    f"{self.index_path} does not match its manifest checksum (truncated or modified); "
                    "re-ingest, or delete the folder to rebuild"
                )
            try:
                self._index = _faiss().read_index(str(self.index_path))
            except RuntimeError as exc:
                raise CorruptIndexError(f"cannot read {self.index_path}: {exc}") from None
        else:
            self._new_index()
        if manifest.get("seq") != self._db.seq:
            log.warning("FAISS store %s: index is behind its sidecar (crash before flush?); rebuilding", self.dir)
            self._rebuild()
            if not self.read_only:
                self._flush()

    # ---- adapter hooks ----
    def _upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[Payload]) -> int:
        import json

        with self._lock:
            existing = self._db.rows_for_ids(ids)
            new_rows: list[tuple[str, str, bytes, int]] = []
            replaced: list[int] = []
            for i, (pid, pl) in enumerate(zip(ids, payloads, strict=True)):
                blob = vectors[i].tobytes()
                pjson = json.dumps(pl, sort_keys=True, separators=(",", ":"))
                old = existing.get(pid)
                if old is not None:
                    if old[1] == blob and old[2] == pjson:
                        continue
                    replaced.append(old[0])
                new_rows.append((pid, pjson, blob, i))
            if not new_rows:
                return 0
            fields = {k for _, pj, _, _ in new_rows for k in json.loads(pj)}

            def tx(cur: Any) -> list[int]:
                if replaced:
                    cur.executemany("DELETE FROM points WHERE fid=?", [(f,) for f in replaced])
                fids = []
                for pid, pjson, blob, _ in new_rows:
                    cur.execute("INSERT INTO points(id, payload, vector) VALUES(?,?,?)", (pid, pjson, blob))
                    fids.append(cur.lastrowid)
                cur.executemany("INSERT OR IGNORE INTO fields(name) VALUES(?)", [(f,) for f in fields])
                if replaced and self.kind == "hnsw":
                    cur.executemany("INSERT OR IGNORE INTO tombstones(fid) VALUES(?)", [(f,) for f in replaced])
                return fids

            fid_list = self._db.write(tx)
            self._db.cache_drop(replaced)
            self._db.cache_put((f, r[0], r[1]) for f, r in zip(fid_list, new_rows, strict=True))
            fids = np.array(fid_list, dtype=np.int64)
            self._n += len(new_rows) - len(replaced)
            if replaced:
                self._remove_from_index(np.array(replaced, dtype=np.int64))
            if self._index is not None:
                self._index.add_with_ids(vectors[[r[3] for r in new_rows]], fids)
            return len(new_rows)

    def _remove_from_index(self, fids: np.ndarray) -> None:
        if self.kind == "hnsw":
            self._tomb = np.union1d(self._tomb, fids)  # faiss HNSW cannot remove: tombstones
            return
        if self._index is None:
            return  # untrained: nothing indexed yet
        self._index.remove_ids(_faiss().IDSelectorBatch(fids))

    def _delete(self, ids: list[str]) -> int:
        with self._lock:
            rows = self._db.rows_for_ids(ids)
            if not rows:
                return 0
            fids = [r[0] for r in rows.values()]

            def tx(cur: Any) -> None:
                cur.executemany("DELETE FROM points WHERE fid=?", [(f,) for f in fids])
                if self.kind == "hnsw":
                    cur.executemany("INSERT OR IGNORE INTO tombstones(fid) VALUES(?)", [(f,) for f in fids])

            self._db.write(tx)
            self._db.cache_drop(fids)
            self._n -= len(fids)
            self._remove_from_index(np.array(fids, dtype=np.int64))
            return len(fids)

    def build(self, retrain_growth: float = 4.0) -> bool:
        """Train ivf/ivfpq now if untrained, or retrain when the data grew retrain_growth× since. True if trained."""
        self._check_open()
        with self._lock:
            if self.kind not in ("ivf", "ivfpq"):
                return False
            grown = (
                self._index is not None
                and self.params.nlist is None
                and self._trained_at
                and self._n >= retrain_growth * self._trained_at
            )
            if self._index is None or grown:
                self._train_ivf()
                return True
            return False

    def _ensure_index(self) -> None:
        if self._index is None:
            if self._n == 0:
                return
            self._train_ivf()

    def _search(self, queries: np.ndarray, k: int, flt: Filter | None, params: SearchParams) -> list[list[Hit]]:
        with self._lock:
            if self._n == 0:
                return [[] for _ in range(len(queries))]
            self._ensure_index()
            rerank = (
                params.rerank if params.rerank is not None else (self.defaults.rerank if self.kind == "ivfpq" else 0)
            )
            allowed: np.ndarray | None = None
            if flt is not None:
                allowed = self._db.matching_fids(flt)
                if len(allowed) == 0:
                    return [[] for _ in range(len(queries))]
            if params.exact or (allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT and self.kind != "flat"):
                fids, scores = self._exact(queries, k, allowed)
            else:
                fetch = k * rerank if rerank > 1 else k
                fids, scores = self._index_search(queries, fetch, allowed, params)
                if rerank > 1:
                    fids, scores = self._rerank(queries, fids, k)
                # a filtered search returns k hits whenever k points match: where the index found fewer
                # (selective filter, low nprobe), answer that query exactly. Unfiltered ANN results stay as found.
                want = min(k, len(allowed)) if allowed is not None else 0
                short = [i for i in range(len(queries)) if (fids[i] >= 0).sum() < want]
                if short:
                    ef, es = self._exact(queries[short], k, allowed)
                    fids = _pad(fids, k)
                    scores = _pad(scores, k, fill=np.nan)
                    fids[short], scores[short] = ef, es
            return self._hits(fids, scores)

    def _index_search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, params: SearchParams
    ) -> tuple[np.ndarray, np.ndarray]:
        f = _faiss()
        sel = None
        if allowed is not None:
            sel = f.IDSelectorBatch(allowed)
        elif self.kind == "hnsw" and len(self._tomb):
            sel = f.IDSelectorNot(f.IDSelectorBatch(self._tomb))
        if self.kind in ("ivf", "ivfpq"):
            sp = f.SearchParametersIVF(nprobe=params.nprobe or self.defaults.nprobe)
        elif self.kind == "hnsw":
            sp = f.SearchParametersHNSW(efSearch=max(params.hnsw_ef or self.defaults.ef_search, k))
        else:
            sp = f.SearchParameters()
        if sel is not None:
            sp.sel = sel
        dist, fids = self._index.search(queries, k, params=sp)
        if self.metric is Metric.L2:
            dist = np.sqrt(np.maximum(dist, 0))
        return fids, dist

    def raw_search(self, queries: np.ndarray, k: int, params: SearchParams) -> tuple[np.ndarray, np.ndarray]:
        """The bare faiss call (no validation, filters, re-rank or payloads): the benchmarks' baseline."""
        return self._index_search(queries, k, None, params)

    def _exact(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None:
            fids, vecs = self._db.vectors_for(allowed)
        else:
            parts = list(self._db.all_vectors())
            fids = np.concatenate([p[0] for p in parts])
            vecs = np.concatenate([p[1] for p in parts])
        idx, scores = top_k(exact_scores(queries, vecs, self.metric), k, self.metric)
        return _pad(fids[idx], k), _pad(scores, k, fill=np.nan)

    def _rerank(self, queries: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_f = np.full((len(queries), k), -1, dtype=np.int64)
        out_s = np.full((len(queries), k), np.nan, dtype=np.float32)
        uniq = np.unique(cand[cand >= 0])
        fids, vecs = self._db.vectors_for(uniq)
        pos = {int(f): i for i, f in enumerate(fids)}
        for qi in range(len(queries)):
            rows = [pos[int(c)] for c in cand[qi] if c >= 0 and int(c) in pos]
            if not rows:
                continue
            sc = exact_scores(queries[qi : qi + 1], vecs[rows], self.metric)
            idx, s = top_k(sc, k, self.metric)
            n = idx.shape[1]
            out_f[qi, :n] = fids[rows][idx[0]]
            out_s[qi, :n] = s[0]
        return out_f, out_s

    def _hits(self, fids: np.ndarray, scores: np.ndarray) -> list[list[Hit]]:
        valid = fids[fids >= 0]
        rows = self._db.rows_for_fids(valid.tolist() if valid.size <= 64 else np.unique(valid).tolist())
        out: list[list[Hit]] = []
        for fr, sr in zip(fids.tolist(), scores.tolist(), strict=True):
            hits = []
            for fid, sc in zip(fr, sr, strict=True):
                row = rows.get(fid)
                if row is not None:
                    hits.append(Hit(row[0], sc, row[1]))
            out.append(hits)
        return out

    def _count(self) -> int:
        return self._n

    def _ids(self) -> set[str]:
        return self._db.ids()

    def _fetch(self, ids: list[str]) -> dict[str, tuple[np.ndarray | None, Payload]]:
        import json

        return {
            pid: (np.frombuffer(vec, dtype=np.float32).copy(), json.loads(pl))
            for pid, (_, vec, pl) in self._db.rows_for_ids(ids).items()
        }

    def _has_field(self, field: str) -> bool:
        return self._db.has_field(field)

    def _flush(self) -> None:
        if self.read_only:
            return
        with self._lock:
            if self.kind == "hnsw" and self._index is not None:
                tomb = len(self._tomb)
                if tomb and tomb > 0.2 * max(self._index.ntotal, 1):
                    self._rebuild()  # compaction: drop tombstoned nodes from the graph
            has_index = self._index is not None
            if has_index:
                atomic_write(self.index_path, lambda tmp: _faiss().write_index(self._index, tmp))
            manifest = {
                "format_version": FORMAT_VERSION,
                "name": self.name,
                "kind": self.kind,
                "dim": self.dim,
                "metric": self.metric.value,
                "fingerprint": self.fingerprint,
                "params": asdict(self.params),
                "nlist": self._nlist,
                "trained_at": getattr(self, "_trained_at", None),
                "count": self._n,
                "seq": self._db.seq,
                "has_index": has_index,
                "index_file": self.index_path.name,
                "checksum": sha256_file(self.index_path) if has_index else None,
                "created": self._created,
                "updated": now_iso(),
                "faiss_version": _faiss().__version__,
            }
            write_json(self.manifest_path, manifest)

    def _release(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)
        finally:
            self._lockfile.close()

    def _close(self) -> None:
        try:
            self._flush()
        finally:
            self._release()

    def _info(self) -> dict[str, Any]:
        size = lambda p: p.stat().st_size if p.exists() else 0  # noqa: E731
        return {
            "kind": self.kind,
            "params": asdict(self.params),
            "nlist": self._nlist,
            "trained": self._index is not None,
            "index_bytes": size(self.index_path),
            "sidecar_bytes": size(self.sqlite_path) + size(Path(str(self.sqlite_path) + "-wal")),
            "path": str(self.dir),
        }

    def memory_bytes(self) -> int:
        """Bytes the index keeps in RAM (the serialized index size; the sidecar stays on disk)."""
        if self._index is None:
            return 0
        return int(_faiss().serialize_index(self._index).nbytes)


def _pad(a: np.ndarray, k: int, fill: float = -1) -> np.ndarray:
    if a.shape[1] >= k:
        return a
    pad = np.full((a.shape[0], k - a.shape[1]), fill, dtype=a.dtype)
    return np.concatenate([a, pad], axis=1)
