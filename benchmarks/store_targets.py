"""The FAISS collection store's targets (issue 13, item 5), measured from one run and judged by ``claims``.

(a) a 1%-selective filtered search on the largest N returns k hits at p50 ≤ 5 ms, per FAISS kind built there;
(b) at a fixed number of matches (100, 1,000) the filtered search costs the same from the smallest to the largest
    N (ratio of p50s ≤ FLAT_RATIO);
(c) IVF-PQ exact re-rank ×10 adds ≤ 100 µs p50 per query (rerank=10 against rerank off, same store);
(d) the layer's cost per single query over the raw faiss call, for every FAISS kind, with the payload-free search
    (``with_payload=False``) beside the full one: reported, no longer judged (``claims.NOT_JUDGED`` says why);
(e) the four FAISS kinds of a collection take ≤ 5× the raw float32 vectors on disk;
(f) bulk upsert + build into FAISS flat takes no longer than LangChain's ``FAISS.from_embeddings`` on the
    same vectors (or a bare faiss IndexFlat add when langchain-community is not installed: then said so).

The harness's parts do the rest: ``timing`` the clocks (one p50), ``metrics`` the recall (tie credit and id
overlap), ``claims`` the verdicts, ``report`` the markdown, ``retrieval.disk`` the bytes on disk. The store is used
through ``open_store`` and its public API. (d)'s raw call searches the store's own faiss index object
(``faiss_index``; flat: ``faiss.knn`` over the store's own rows, ``stored_vectors()``), so layer and raw read the
same memory. A second copy of the index (``faiss.read_index`` of the file the store's ``info()`` folder names) is
timed against it and reported beside: two copies of one index differ by tens of µs with where the allocator placed
them (the copy loaded first is the slower one, whoever owns it). Every target row carries the numbers its verdict
is computed from (``formula`` + ``inputs``), so the verdict can be recomputed from the JSON. results.json and
report.md are rewritten after every target, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.claims import FLAT_RATIO, target_row
from benchmarks.datasets import clustered
from benchmarks.report import targets_markdown
from benchmarks.runner import environment
from benchmarks.target_calls import (
    HNSW_EF,
    NPROBE,
    RERANK,
    K,
    first_search,
    layer_overhead,
    layer_params,
    recalls,
)
from benchmarks.timing import block_p50s, single_p50s
from retrieval.disk import folder_bytes
from retrieval.settings import Settings
from retrieval.stores import DEFAULT_KINDS, SearchParams, VectorStore, open_store

__all__ = ["FIXED_MATCHES", "FLAT_RATIO", "TargetRun", "run_targets", "target_row"]

DIM = 384

BIG_NLIST = 1024  # ivf at a size whose default nlist (4·√N) is larger: a fixed nlist keeps training short
FIXED_MATCHES = (100, 1000)

Log = Callable[[str], None]


FILTER_RECALL = 0.95  # (a) is met only by answers this close to the exact filtered top-10
REGIONS = 100  # the correlated filter's values: about 1% of the points each


def regions_for(xb: np.ndarray, seed: int = 0) -> np.ndarray:
    """A payload correlated with the data (issue 25 item 6): each point's nearest of ``REGIONS`` anchors drawn
    from the points themselves (seeded), so a value selects whole clusters of one part of the space, about 1% of
    the points, where ``bucket`` selects 1% spread evenly over it."""
    anchors = xb[np.sort(np.random.default_rng(seed + 7).choice(len(xb), REGIONS, replace=False))]
    out = np.empty(len(xb), dtype=np.int64)
    for i in range(0, len(xb), 65536):
        out[i : i + 65536] = np.argmax(xb[i : i + 65536] @ anchors.T, axis=1)
    return out


def payloads_for(n: int, regions: np.ndarray | None = None) -> list[dict[str, Any]]:
    """bucket: 1% selectivity per value; m100 / m1000: exactly 100 / 1,000 points carry "t" at every N; region
    (when given): the correlated 1% (``regions_for``)."""
    out: list[dict[str, Any]] = [
        {"bucket": i % 100, "m100": "t" if i < 100 else "u", "m1000": "t" if i < 1000 else "u"} for i in range(n)
    ]
    if regions is not None:
        for p, r in zip(out, regions.tolist(), strict=True):
            p["region"] = r
    return out


def filtered_truth(xb: np.ndarray, xq: np.ndarray, values: np.ndarray, fq: Sequence[int]) -> np.ndarray:
    """(nq, K) base positions of the exact top-K of query j among the points whose value is ``fq[j]`` (-1 where
    fewer match)."""
    import faiss

    truth = np.full((len(xq), K), -1, dtype=np.int64)
    for v in sorted(set(fq)):
        members = np.flatnonzero(values == v)
        qs = [j for j in range(len(xq)) if fq[j] == v]
        if not len(members):
            continue
        _, lab = faiss.knn(xq[qs], xb[members], min(K, len(members)), faiss.METRIC_INNER_PRODUCT)
        truth[qs, : lab.shape[1]] = np.where(lab >= 0, members[np.maximum(lab, 0)], -1)
    return truth


def replay_filtered(
    st: VectorStore, xq: np.ndarray, field: str | None, fq: Sequence[int], params: SearchParams | None, repeats: int
) -> tuple[list[float], list[Any]]:
    """``single_p50s`` of query j searched with the filter {field: fq[j]} (None: unfiltered), the warm-up done as a
    whole pass, so that query j meets filter j in every repeat."""
    counter = iter(range(10**12))

    def one(q: np.ndarray) -> Any:
        j = next(counter) % len(xq)
        return st.search(q, K, filter=None if field is None else {field: fq[j]}, params=params)[0]

    for q in xq:
        one(q[None, :])
    return single_p50s(one, xq, repeats, 0)


PATHS = ("exact", "index", "topup")  # a FAISS store's search counters: who answered (``FaissStore.stats``)


def path_counts(st: VectorStore, before: dict[str, int] | None = None) -> dict[str, int]:
    """The store's search-path counters (exact: brute force below EXACT_FILTER_LIMIT or flat; index: the ANN
    index; topup: queries the index left short of k, answered exactly), minus ``before``."""
    now = st.info().get("searches", {})
    return {p: int(now.get(p, 0)) - int((before or {}).get(p, 0)) for p in PATHS}


# ---- the run ----
class TargetRun:
    """One run: data per size, stores built through the public API, target rows appended as measured."""

    def __init__(
        self,
        out: Path,
        sizes: Sequence[int],
        dim: int,
        nq: int,
        repeats: int,
        warmup: int,
        threads: int,
        build_threads: int,
        work: Path,
        log: Log,
        seed: int,
        baseline: str,
    ) -> None:
        self.out, self.sizes, self.dim, self.nq, self.repeats, self.warmup = out, list(sizes), dim, nq, repeats, warmup
        self.threads, self.build_threads, self.work, self.log, self.seed = threads, build_threads, work, log, seed
        self.regions: np.ndarray | None = None  # the correlated filter's values at the size being measured
        self.baseline = baseline
        self.t0 = time.perf_counter()
        self.results: dict[str, Any] = {
            "mode": "targets",
            "run": environment(threads),
            "method": {
                "k": K,
                "dim": dim,
                "sizes": list(sizes),
                "queries": nq,
                "repeats": repeats,
                "warmup_queries": warmup,
                "search_threads": threads,
                "build_threads": build_threads,
                "query_params": {"nprobe": NPROBE, "hnsw_ef": HNSW_EF, "rerank": RERANK},
                "data": "benchmarks.datasets.clustered (seeded Gaussian clusters on the unit sphere, cosine)",
                "payloads": "bucket = i % 100 (1% per value); m100 / m1000 = 't' for the first 100 / 1,000 points",
                "timing": "single queries, time.perf_counter around each call; warm-up queries first; per repeat the "
                "p50 over the queries; the calls compared (layer, payload-free layer and raw, or two settings) timed "
                "in blocks of all the queries, which goes first rotating per repeat; "
                "a row's measured value is the median over repeats (f: best of repeats); (d) flat runs "
                "2 × repeats − 1 repeats (a 6 ms scan drifts more between blocks than the layer's cost)",
                "recall": "recall@10 credits ties within 1e-3 of the 10th true distance (ann-benchmarks); "
                "id_recall@10 is the plain id overlap",
                "big_nlist": BIG_NLIST,
            },
            "measurements": {},
            "targets": [],
            "complete": False,
        }

    # ---- output ----
    def save(self) -> None:
        self.results["wall_s"] = time.perf_counter() - self.t0
        self.results["run"]["load_average_now"] = list(os.getloadavg())
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=2, default=float) + "\n")
        tmp.replace(self.out / "results.json")
        (self.out / "report.md").write_text(targets_markdown(self.results))

    def add(self, row: dict[str, Any]) -> None:
        row["load_average"] = list(os.getloadavg())
        self.results["targets"].append(row)
        judged = f"(≤ {row['threshold']}) → {'met' if row['met'] else 'NOT met'}" if row["judged"] else "(reported)"
        self.log(f"target {row['id']} [{row['label']}]: {row['measured']:.3f} {row['unit']} {judged}")
        self.save()

    def measure(self, key: str, value: Any) -> None:
        self.results["measurements"][key] = value
        self.save()

    # ---- stores ----
    def open_collection(self, root: Path, name: str, kinds: Sequence[str], n: int) -> dict[str, VectorStore]:
        settings = Settings(data_dir=root)
        overrides: dict[str, Any] = {}
        if 4 * math.sqrt(n) > BIG_NLIST:
            overrides["nlist"] = BIG_NLIST
        return {k: open_store(settings, name, k, dim=self.dim, **(overrides if k != "flat" else {})) for k in kinds}

    def build_collection(
        self, stores: dict[str, VectorStore], xb: np.ndarray, payloads: list[dict[str, Any]]
    ) -> dict[str, float]:
        import faiss

        faiss.omp_set_num_threads(self.build_threads)
        ids = [f"p{i}" for i in range(len(xb))]
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        first = next(iter(stores.values()))
        step = 100_000
        for i in range(0, len(xb), step):  # one write reaches every open kind (hnsw inserts as it goes)
            first.upsert(ids[i : i + step], xb[i : i + step], payloads[i : i + step])
        times["upsert_s"] = time.perf_counter() - t0
        for k, st in stores.items():
            t1 = time.perf_counter()
            st.build()
            st.flush()
            times[f"build_{k}_s"] = time.perf_counter() - t1
        faiss.omp_set_num_threads(self.threads)
        return times

    # ---- targets ----
    def filtered(self, n: int, stores: dict[str, VectorStore], xb: np.ndarray, xq: np.ndarray) -> None:
        """(a) 1% selective filtered searches, spread evenly (``bucket``) and correlated with the data (``region``:
        whole clusters), and (b) fixed-match ones at this size; numbers and the paths that answered kept per
        size."""
        cases = [("1pct", "bucket", np.arange(n) % 100)]
        if self.regions is not None and len(self.regions) == n:
            cases.append(("1pct_correlated", "region", self.regions))
        block: dict[str, Any] = {}
        fq = [j % 100 for j in range(len(xq))]  # 1%: query j filters on value j % 100
        truths = {key: filtered_truth(xb, xq, values, fq) for key, _, values in cases}  # the same for every kind
        for kind, st in stores.items():
            rows: dict[str, Any] = {}
            params = layer_params(kind, RERANK if kind == "ivfpq" else None)
            for key, field, values in cases:
                before = path_counts(st)
                p50s, res = replay_filtered(st, xq, field, fq, params, self.repeats)
                hits = [len(h) for h in res]
                sizes = np.bincount(values, minlength=100)[fq]
                rows[key] = {
                    "p50_us": p50s,
                    "min_hits": min(hits),
                    "k": K,
                    **recalls(res, truths[key], xq, xb),
                    "matches": int(np.median(sizes)),
                    "matches_range": [int(sizes.min()), int(sizes.max())],
                    "field": field,
                    "paths": path_counts(st, before),  # every search of the replay, warm-up included
                }
            for m in FIXED_MATCHES:
                if m > n:
                    continue
                field = f"m{m}"
                p50s, res = single_p50s(
                    partial(first_search, st, {field: "t"}, params),
                    xq,
                    self.repeats,
                    self.warmup,
                )
                rows[field] = {"p50_us": p50s, "min_hits": min(len(h) for h in res), "k": K, "matches": m}
            block[kind] = rows
            self.log(
                f"  {n}: {kind} filtered p50 1% {np.median(rows['1pct']['p50_us']):.0f} µs, "
                + ", ".join(f"{f} {np.median(r['p50_us']):.0f} µs" for f, r in rows.items() if f != "1pct")
            )
        self.measure(f"filtered@{n}", block)

    def judge_filtered(self) -> None:
        """(a) at the largest size per kind, (b) smallest → largest per kind and match count."""
        lo, hi = min(self.sizes), max(self.sizes)
        big = self.results["measurements"].get(f"filtered@{hi}", {})
        for kind, rows in big.items():
            for key, how in (("1pct", ""), ("1pct_correlated", ", correlated filter (whole clusters)")):
                if key not in rows:
                    continue
                r = rows[key]
                paths = r.get("paths")
                said = "" if not paths else " [" + ", ".join(f"{p} {c:,}" for p, c in paths.items() if c) + "]"
                self.add(
                    target_row(
                        "a",
                        f"{kind}, N={hi:,}, {r['matches']:,} matches{how}{said}",
                        "median",
                        {"values": r["p50_us"]},
                        "µs",
                        {
                            "every query returned k hits": r["min_hits"] >= r["k"],
                            # a fast answer is worth nothing wrong: a correlated filter can leave IVF's probed lists
                            # thin in matches, and k hits come back from the wrong ones (recall 0.80 at 1M)
                            f"id_recall@10 >= {FILTER_RECALL}": r.get("id_recall@10", 1.0) >= FILTER_RECALL,
                        },
                        size=hi,
                        kind=kind,
                        filter=r.get("field", "bucket"),
                        paths=paths,
                        recall_at_10=r["recall@10"],
                        id_recall_at_10=r.get("id_recall@10"),
                        scale_to_ms=1e-3,
                    )
                )
        small = self.results["measurements"].get(f"filtered@{lo}", {})
        if lo == hi:
            return
        paired = self.results["measurements"].get("filtered_paired", {}).get("by_kind", {})
        for kind, prow in paired.items():
            for r in prow.values():
                self.add(
                    target_row(
                        "b",
                        f"{kind}, {r['matches']:,} matches, N={lo:,} → {hi:,} (both open, alternating blocks)",
                        "ratio_of_medians",
                        {"num": r["p50_us"][str(hi)], "den": r["p50_us"][str(lo)]},
                        "×",
                        {"every query returned k hits": r["min_hits"] >= r["k"]},
                        kind=kind,
                        matches=r["matches"],
                        p50_us={lo: float(np.median(r["p50_us"][str(lo)])), hi: float(np.median(r["p50_us"][str(hi)]))},
                        how="paired",
                    )
                )
        for kind, rows in big.items():
            if kind in paired:
                continue  # the paired measurement is the verdict; the per-size numbers stay in measurements
            if kind not in small:
                continue
            for m in FIXED_MATCHES:
                f = f"m{m}"
                if f not in rows or f not in small[kind]:
                    continue
                self.add(
                    target_row(
                        "b",
                        f"{kind}, {m:,} matches, N={lo:,} → {hi:,}",
                        "ratio_of_medians",
                        {"num": rows[f]["p50_us"], "den": small[kind][f]["p50_us"]},
                        "×",
                        {"every query returned k hits": min(rows[f]["min_hits"], small[kind][f]["min_hits"]) >= K},
                        kind=kind,
                        matches=m,
                        p50_us={
                            lo: float(np.median(small[kind][f]["p50_us"])),
                            hi: float(np.median(rows[f]["p50_us"])),
                        },
                    )
                )

    def layer_overhead(self, n: int, stores: dict[str, VectorStore], xb: np.ndarray, xq: np.ndarray) -> None:
        """(d) layer − raw faiss per FAISS kind, with and without payloads; (c) ivfpq re-rank ×10 against off."""
        layer_overhead(n, stores, xb, xq, self.nq, self.repeats, self.warmup, self.add)

    def disk(self, n: int, coll: Path, kinds: Sequence[str]) -> None:
        """(e) every file of the collection (shared point store + the kinds) over N × d × 4 bytes."""
        used, apparent = folder_bytes(coll), folder_bytes(coll, apparent=True)
        per = {p.name: folder_bytes(p) for p in sorted(coll.iterdir()) if p.is_dir()}
        raw = n * self.dim * 4
        self.add(
            target_row(
                "e",
                f"{'+'.join(kinds)}, N={n:,}",
                "ratio",
                {"num": used, "den": raw},
                "×",
                {"all four FAISS kinds present": set(kinds) == set(DEFAULT_KINDS)},
                size=n,
                bytes_by_folder=per,
                apparent_bytes=apparent,
                raw_vector_bytes=raw,
            )
        )

    def bulk(self, n: int, xb: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        """(f) flat upsert + build against the baseline's bulk load, same vectors, best of repeats."""
        import faiss

        faiss.omp_set_num_threads(self.threads)
        texts = [f"doc {i}" for i in range(n)]
        ids = [f"p{i}" for i in range(n)]
        ours_payloads = [{"text": t, **p} for t, p in zip(texts, payloads, strict=True)]
        base, base_name = self._baseline(texts, xb, payloads)
        ours: list[float] = []
        theirs: list[float] = []
        close_s: list[float] = []
        first_filter_s: list[float] = []
        for r in range(self.repeats):
            for who in ("ours", "base") if r % 2 == 0 else ("base", "ours"):
                if who == "base":
                    theirs.append(base())
                    continue
                root = Path(tempfile.mkdtemp(prefix="bulk-", dir=self.work))
                try:
                    t0 = time.perf_counter()
                    st = open_store(Settings(data_dir=root), "bulk", "flat", dim=self.dim)
                    st.upsert(ids, xb, ours_payloads)
                    st.build()
                    ours.append(time.perf_counter() - t0)
                    # string fields get their posting bitmaps on the first filter that reads them: that deferred
                    # cost, timed apart (LangChain's store builds no filter index at all)
                    t2 = time.perf_counter()
                    st.search(xb[0], K, filter={"text": "doc 7", "m100": "t", "m1000": "t"})
                    first_filter_s.append(time.perf_counter() - t2)
                    t1 = time.perf_counter()
                    st.close()
                    close_s.append(time.perf_counter() - t1)
                finally:
                    shutil.rmtree(root, ignore_errors=True)
        self.add(
            target_row(
                "f",
                f"flat, N={n:,}, against {base_name}",
                "ratio_of_mins",
                {"num": ours, "den": theirs},
                "×",
                {},
                size=n,
                baseline=base_name,
                ours_s=ours,
                baseline_s=theirs,
                ours_first_string_filter_s=first_filter_s,
                ours_close_s=close_s,
                note="ours: open_store + upsert (ids, vectors, payload {text, bucket, m100, m1000}) + build(), "
                "written to disk; close() (flush + fsync) timed apart in ours_close_s; the first filter on the "
                "string fields (which builds their posting bitmaps) timed apart in ours_first_string_filter_s. "
                "Baseline: the same texts, vectors (numpy rows) and metadata, in memory, with no filter index.",
            )
        )

    def _baseline(
        self, texts: list[str], xb: np.ndarray, payloads: list[dict[str, Any]]
    ) -> tuple[Callable[[], float], str]:
        if self.baseline == "langchain":
            try:
                from langchain_community.vectorstores import FAISS as LCFAISS  # noqa: N811
                from langchain_core.embeddings import FakeEmbeddings
            except ImportError as exc:
                self.log(f"langchain-community not importable ({exc}): baseline is a bare faiss IndexFlat add")
            else:
                import importlib.metadata as md

                emb = FakeEmbeddings(size=self.dim)
                pairs = list(zip(texts, list(xb), strict=True))

                def lc() -> float:
                    t0 = time.perf_counter()
                    LCFAISS.from_embeddings(pairs, emb, metadatas=payloads)
                    return time.perf_counter() - t0

                return lc, f"LangChain FAISS.from_embeddings (langchain-community {md.version('langchain-community')})"

        import faiss

        def bare() -> float:
            t0 = time.perf_counter()
            idx = faiss.IndexFlatIP(self.dim)
            idx.add(xb)
            return time.perf_counter() - t0

        return bare, "a bare faiss IndexFlatIP add (langchain-community not used)"

    # ---- driver ----
    def fixed_paired(self, roots: dict[int, Path], xq: np.ndarray) -> None:
        """(b) with the smallest and the largest collection open at once, timed in alternating blocks (the
        same machine state for both sizes; the per-size numbers were taken minutes apart)."""
        lo, hi = min(roots), max(roots)
        out: dict[str, Any] = {}
        for kind in ("flat", "ivf"):
            pair = {n: open_store(Settings(data_dir=roots[n]), "coll", kind, read_only=True) for n in (lo, hi)}
            try:
                params = layer_params(kind)
                rows: dict[str, Any] = {}
                for m in FIXED_MATCHES:
                    if m > lo:
                        continue
                    flt = {f"m{m}": "t"}
                    a, b = block_p50s(
                        [partial(first_search, pair[lo], flt, params), partial(first_search, pair[hi], flt, params)],
                        xq,
                        self.repeats,
                        self.warmup,
                    )
                    hits = min(len(first_search(pair[n], flt, params, q[None, :])) for n in (lo, hi) for q in xq[:20])
                    rows[f"m{m}"] = {"p50_us": {str(lo): a, str(hi): b}, "min_hits": hits, "k": K, "matches": m}
                out[kind] = rows
                self.log(
                    f"  paired {lo}/{hi}: {kind} "
                    + ", ".join(
                        f"{f} {np.median(r['p50_us'][str(lo)]):.0f}/{np.median(r['p50_us'][str(hi)]):.0f} µs"
                        for f, r in rows.items()
                    )
                )
            finally:
                for st in pair.values():
                    st.close()
        self.measure("filtered_paired", {"sizes": [lo, hi], "by_kind": out})

    def run(self) -> dict[str, Any]:
        first = self.sizes[0]
        keep: dict[int, Path] = {}
        try:
            xq = self._run_sizes(first, keep)
            if len(keep) == 2:
                self.fixed_paired(keep, xq)
        finally:
            for root in keep.values():
                shutil.rmtree(root, ignore_errors=True)
        self.judge_filtered()
        self.results["complete"] = True
        self.save()
        return self.results

    def _run_sizes(self, first: int, keep: dict[int, Path]) -> np.ndarray:
        """Build and measure each size; the first size's queries are returned (the paired measurement's)."""
        first_xq = np.empty((0, self.dim), dtype=np.float32)
        for n in self.sizes:
            t_size = time.perf_counter()
            ds = clustered(n=n, d=self.dim, nq=self.nq, seed=self.seed)
            xb, xq = ds.xb, ds.xq
            self.regions = regions_for(xb, self.seed)
            payloads = payloads_for(n, self.regions)
            if n == first:
                first_xq = xq.copy()
            self.log(f"targets {n}: {n:,} × {self.dim}, {len(xq)} queries (load {os.getloadavg()[0]:.2f})")
            kinds = list(DEFAULT_KINDS) if n == first else ["flat", "ivf"]
            root = Path(tempfile.mkdtemp(prefix=f"targets-{n}-", dir=self.work))
            try:
                if n == first:
                    self.bulk(n, xb, payloads)
                stores = self.open_collection(root, "coll", kinds, n)
                try:
                    times = self.build_collection(stores, xb, payloads)
                    self.measure(f"build@{n}", times)
                    self.log(f"  {n}: built {kinds} {json.dumps({k: round(v, 1) for k, v in times.items()})}")
                    self.filtered(n, stores, xb, xq)
                    if n == first:
                        self.layer_overhead(n, stores, xb, xq)
                finally:
                    for st in stores.values():
                        st.close()
                if n == first:
                    self.disk(n, root / "faiss" / "coll", kinds)
            finally:
                if n in (self.sizes[0], self.sizes[-1]) and len(self.sizes) > 1:
                    keep[n] = root  # for the paired (b) measurement, removed by run()
                else:
                    shutil.rmtree(root, ignore_errors=True)
            del ds, xb, xq, payloads
            self.results["measurements"].setdefault("wall_s_by_size", {})[str(n)] = time.perf_counter() - t_size
            self.save()
        return first_xq


def run_targets(
    out: Path,
    sizes: Sequence[int] = (100_000, 1_000_000),
    dim: int = DIM,
    nq: int = 300,
    repeats: int = 5,
    warmup: int = 30,
    threads: int = 1,
    build_threads: int = 2,
    work_dir: Path | None = None,
    log: Log = print,
    seed: int = 0,
    baseline: str = "langchain",
) -> dict[str, Any]:
    """Measure every target; sizes ascending (the first gets all four kinds and targets c–f, each size a and b)."""
    import faiss

    faiss.omp_set_num_threads(threads)
    sizes = sorted(set(sizes))
    work = Path(tempfile.mkdtemp(prefix="simlookup-targets-", dir=work_dir))
    try:
        return TargetRun(out, sizes, dim, nq, repeats, warmup, threads, build_threads, work, log, seed, baseline).run()
    finally:
        shutil.rmtree(work, ignore_errors=True)
