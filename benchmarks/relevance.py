"""Retrieval quality against relevance judgments (``simlookup eval``): nDCG, MRR, recall and MAP per index and mode.

A BEIR folder (or a shipped judged set, built on first use) is ingested into a collection through the normal
ingest path when the collection does not exist yet; its queries are encoded in batches by the collection's
model and searched through the Retriever on every index asked, at the indexes' tuned defaults, in every search
mode asked: ``dense`` (the vectors), ``keyword`` (BM25 on the collection's keyword leg) and ``hybrid`` (both legs,
fused by each fusion method asked). The metrics come from ``ir_measures`` (trec_eval's definitions through
pytrec_eval, as BEIR uses them): graded nDCG@k, RR@k, R@100, AP@100, averaged over every judged query (a query
with no hit scores 0). Each row other than flat's also says how much of its top k it shares with flat's in the
same mode (``top{k}_overlap_flat``).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.beir import BeirSet, corpus_spec, read_beir
from ingest.judged_sets import JUDGED_SETS, judged_set_folder
from retrieval.errors import InvalidInputError, SimlookupError, StoreNotFoundError
from retrieval.hybrid import MODES
from retrieval.keyword.fusion import FUSION_METHODS, Fusion
from retrieval.settings import Settings
from retrieval.stores import DEFAULT_KINDS, FAISS_KINDS, QDRANT_INDEX

INDEXES = (*FAISS_KINDS, QDRANT_INDEX)
DEFAULT_INDEXES = (*DEFAULT_KINDS, QDRANT_INDEX)  # the SQ8 tiers when asked
DEPTH = 100  # hits per query: recall@100 and MAP@100
QUERY_BATCH = 64


class EvalError(SimlookupError):
    """An evaluation that cannot run (a collection built from another source, a missing metrics library)."""


@dataclass(frozen=True)
class EvalRequest:
    """What ``simlookup eval`` is asked."""

    dataset: str  # a BEIR folder, or a shipped judged set's name
    name: str
    indexes: tuple[str, ...] = DEFAULT_INDEXES
    modes: tuple[str, ...] = ("dense",)
    k: int = 10
    progress: bool = True
    fusions: tuple[str, ...] = ()  # hybrid rows: one per fusion method (empty: the settings' default)
    alpha: float | None = None  # the dense leg's share of a hybrid score (None: the settings')

    def runs(self, settings: Settings) -> list[tuple[str, Fusion | None]]:
        """(mode, fusion) of every run: dense and keyword once, hybrid once per fusion method."""
        ks = settings.keyword
        alpha = ks.alpha if self.alpha is None else self.alpha
        out: list[tuple[str, Fusion | None]] = []
        for mode in self.modes:
            if mode != "hybrid":
                out.append((mode, None))
                continue
            out += [(mode, Fusion(f, alpha, ks.rrf_k)) for f in self.fusions or (ks.fusion,)]  # type: ignore[arg-type]
        return out


def parse_list(text: str | None, allowed: tuple[str, ...], what: str, note: str = "") -> tuple[str, ...]:
    """A comma-separated choice list (None: all of ``allowed``); an unknown item is an error naming the choices."""
    if text is None:
        return allowed
    items = tuple(dict.fromkeys(i.strip() for i in text.split(",") if i.strip()))
    unknown = [i for i in items if i not in allowed]
    if unknown or not items:
        raise InvalidInputError(f"{what} {text!r}: unknown {unknown or 'empty list'}; use any of {list(allowed)}{note}")
    return items


def parse_modes(text: str | None) -> tuple[str, ...]:
    """``--mode``: a list of search modes (default: dense)."""
    return parse_list(text, MODES, "--mode") if text is not None else ("dense",)


def parse_fusions(text: str | None) -> tuple[str, ...]:
    """``--fusion``: the fusion methods of the hybrid rows (default: the settings', rrf)."""
    return parse_list(text, FUSION_METHODS, "--fusion") if text is not None else ()


def parse_indexes(text: str | None) -> tuple[str, ...]:
    """``--index``: a list of FAISS kinds and ``qdrant``; flat always runs (the reference of the loss)."""
    items = parse_list(text, INDEXES, "--index") if text is not None else DEFAULT_INDEXES
    return ("flat", *[i for i in items if i != "flat"])


def dataset_folder(settings: Settings, dataset: str) -> Path:
    """A shipped judged set's folder (built on first use) or the user's BEIR folder."""
    p = Path(dataset).expanduser()
    if dataset in JUDGED_SETS and not p.exists():
        return judged_set_folder(settings.data_dir, dataset)
    if not p.is_dir():
        raise EvalError(
            f"{dataset!r} is neither a BEIR folder nor a shipped judged set: give a folder holding corpus.jsonl, "
            f"queries.jsonl and qrels/test.tsv, or one of {sorted(JUDGED_SETS)}"
        )
    return p


def ensure_collection(
    settings: Settings, data: BeirSet, req: EvalRequest, encoders: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Ingest the set's corpus into ``req.name`` unless the collection holds it already with every index asked;
    a collection built from another source is refused. Returns the ingest summary when one ran."""
    from ingest.job import IngestOptions, run_ingest
    from retrieval.collection_manifest import load_collection

    spec = corpus_spec(data.folder)
    try:
        m = load_collection(settings.data_dir, req.name)
    except StoreNotFoundError:
        m = None
    faiss_kinds = [i for i in req.indexes if i in FAISS_KINDS]
    qdrant = QDRANT_INDEX in req.indexes
    if m is not None:
        if m.corpus != spec:
            raise EvalError(
                f"collection {req.name!r} was built from {m.corpus!r}, not from {spec!r}: evaluate it under another "
                f"--name (or drop it: simlookup drop {req.name} --yes)"
            )
        missing = [i for i in req.indexes if i not in m.indexes]
        from ingest.corpora import get_corpus

        fresh = m.corpus_fingerprint == get_corpus(spec).fingerprint()
        if not missing and m.complete and fresh:
            return None
        faiss_kinds = list(dict.fromkeys([*[i for i in m.indexes if i in FAISS_KINDS], *faiss_kinds]))
        qdrant = qdrant or QDRANT_INDEX in m.indexes
    opts = IngestOptions(
        corpus=spec,
        name=req.name,
        indexes=faiss_kinds,
        qdrant=None if qdrant else "none",
        progress=req.progress,
        guard=True,  # never removes points of an existing collection without the user's own ingest --yes
    )
    return run_ingest(settings, opts, encoders).to_dict()


def rejected_documents(settings: Settings, data: BeirSet, name: str) -> dict[str, Any]:
    """The set's documents the collection's ingest rejected (``ingest.beir.ingest_losses``: counts, the judged
    ones, warnings naming the rejects file)."""
    from ingest.beir import ingest_losses
    from ingest.job import rejects_of

    path = settings.data_dir / "rejects" / f"{name}.jsonl"
    return ingest_losses(data, rejects_of(settings.data_dir, name), path)


def metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], k: int) -> dict[str, float]:
    """Mean graded nDCG@k, RR@k (MRR), R@100 and AP@100 (MAP) over every judged query (no hits: 0), by
    ``ir_measures`` (trec_eval's definitions: nDCG with linear gains, relevant = grade > 0)."""
    try:
        import ir_measures
        from ir_measures import AP, RR, R, nDCG
    except ImportError:
        raise EvalError("simlookup eval needs the IR metrics library: pip install 'simlookup[eval]'") from None
    names = {nDCG @ k: f"ndcg@{k}", RR @ k: f"mrr@{k}", R @ DEPTH: f"recall@{DEPTH}", AP @ DEPTH: f"map@{DEPTH}"}
    sums = dict.fromkeys(names.values(), 0.0)
    run = {q: r for q, r in run.items() if r and q in qrels}
    for m in ir_measures.iter_calc(list(names), qrels, run):
        sums[names[m.measure]] += float(m.value)
    return {key: v / len(qrels) for key, v in sums.items()}


def ranked_run(ranked: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Hit lists as an ir_measures run whose scores keep the engine's order (rank 1 scores highest), so that
    equal scores cannot be re-ordered by trec_eval's tie-breaking."""
    return {q: {d: float(len(ids) - r) for r, d in enumerate(ids)} for q, ids in ranked.items()}


def run_eval(
    settings: Settings,
    req: EvalRequest,
    log: Callable[[str], None] = lambda _: None,
    encoders: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ingest if needed, search every judged query on every index and mode, and score the hits (``encoders``:
    already loaded encoders by kind, as for ``run_ingest`` and the Retriever)."""
    import numpy as np

    from retrieval.retriever import Retriever

    folder = dataset_folder(settings, req.dataset)
    data = read_beir(folder)  # every check before anything is written
    ingest = ensure_collection(settings, data, req, encoders)
    losses = rejected_documents(settings, data, req.name)  # judged documents the ingest rejected: said, not silent
    t_start = time.perf_counter()
    qids = list(data.queries)
    runs = req.runs(settings)
    rows: list[dict[str, Any]] = []
    tops: dict[tuple[str, str, str], dict[str, list[str]]] = {}  # (mode, fusion, index) -> top k ids by query
    with Retriever(settings, req.name, encoders=encoders) as r:
        space = r.space("text")
        enc = r.matching_encoder(space)
        for index in req.indexes:
            r.store(index, "text")  # a missing index: a clear error before the clock starts
        if any(mode != "dense" for mode, _ in runs):
            r.collection.keyword.spec()  # no keyword leg: the error naming `simlookup build-keyword NAME`
        t0 = time.perf_counter()
        texts = [data.queries[q] for q in qids]
        batches = range(0, len(texts), QUERY_BATCH)
        vecs = np.concatenate([enc.encode_queries(texts[i : i + QUERY_BATCH]) for i in batches])
        encode_ms = (time.perf_counter() - t0) * 1e3 / len(qids)
        log(f"encoded {len(qids)} queries ({encode_ms:.2f} ms per query in batches of {QUERY_BATCH})")
        for mode, fusion in runs:
            how = Search(mode, fusion)
            for index in req.indexes:
                t_run = time.perf_counter()
                # two searches per query: at k (what a user asks for: nDCG@k, MRR@k, p50), and at 100 (recall,
                # MAP), since an index's effort may grow with k (HNSW searches with ef >= k); flat's dense search
                # is exact, so its top k is the head of its top 100 and one scan serves both
                deep, took_deep = how.all(r, index, qids, vecs, texts, max(DEPTH, req.k))
                one = index == "flat" and mode == "dense"
                top, took = (deep, took_deep) if one else how.all(r, index, qids, vecs, texts, req.k)
                top = {q: ids[: req.k] for q, ids in top.items()}
                shallow = metrics(data.qrels, ranked_run(top), req.k)
                full = metrics(data.qrels, ranked_run(deep), req.k)
                row: dict[str, Any] = {"index": index, "mode": mode}
                if fusion is not None:
                    row |= {"fusion": fusion.method, "alpha": fusion.alpha}
                row |= {
                    f"ndcg@{req.k}": shallow[f"ndcg@{req.k}"],
                    f"mrr@{req.k}": shallow[f"mrr@{req.k}"],
                    f"recall@{DEPTH}": full[f"recall@{DEPTH}"],
                    f"map@{DEPTH}": full[f"map@{DEPTH}"],
                    "p50_ms": statistics.median(took),
                    f"p50_ms@{DEPTH}": statistics.median(took_deep),
                    "seconds": time.perf_counter() - t_run,
                }
                tops[mode, row.get("fusion", ""), index] = top
                rows.append(row)
                log(f"{how.label} {index}: nDCG@{req.k} {row[f'ndcg@{req.k}']:.4f} p50 {row['p50_ms']:.2f} ms")
        manifest = r.manifest
    key = f"ndcg@{req.k}"
    for x in rows:
        same = (x["mode"], x.get("fusion", ""))
        ref = next((y for y in rows if y["index"] == "flat" and (y["mode"], y.get("fusion", "")) == same), None)
        if ref is not None:
            x[f"{key}_loss"] = ref[key] - x[key]
            if x["index"] != "flat":
                x[f"top{req.k}_overlap_flat"] = overlap(tops[(*same, "flat")], tops[(*same, x["index"])], req.k)
    return {
        "dataset": data.name,
        "queries": len(qids),
        "results": rows,
        "documents": manifest.count,  # searched: the corpus less the rejected documents (losses)
        **losses,
        "judgments": sum(len(v) for v in data.qrels.values()),
        "folder": str(folder),
        "provenance": data.provenance,
        "collection": {
            "name": req.name,
            "count": manifest.count,
            "tuning": manifest.tuning,
            "model": space.model,
            "fingerprint": space.fingerprint,
            "keyword": manifest.keyword.model_dump() if manifest.keyword is not None else None,
        },
        "k": req.k,
        "encode_ms_per_query": encode_ms,
        "eval_seconds": time.perf_counter() - t_start,
        "ingest": ingest,
        "environment": _environment(settings),
    }


def overlap(ref: dict[str, list[str]], got: dict[str, list[str]], k: int) -> float:
    """Mean share of the reference's top k (per query) that ``got`` returned in its top k (queries with no
    reference hits are skipped)."""
    shares = [len(set(ids) & set(got.get(q, []))) / min(k, len(ids)) for q, ids in ref.items() if ids]
    return sum(shares) / len(shares) if shares else 1.0


@dataclass(frozen=True)
class Search:
    """One search mode as the eval runs it: each query alone, at its index's defaults, timed (search only: the
    queries were encoded before). As BEIR does, a hit on the query's own id (a query that is also a document) is
    not counted: k + 1 are asked."""

    mode: str
    fusion: Fusion | None = None

    @property
    def label(self) -> str:
        return self.mode if self.fusion is None else f"{self.mode} ({self.fusion.method})"

    def all(
        self, r: Any, index: str, qids: list[str], vecs: Any, texts: list[str], k: int
    ) -> tuple[dict[str, list[str]], list[float]]:
        """(top-k ids by query, ms per search)."""
        ranked, took = {}, []
        for q, vec, text in zip(qids, vecs, texts, strict=True):
            if self.mode == "dense":
                res = r.search_vector(vec, index=index, k=k + 1)
                hits, ms = res.hits, res.took_ms
            else:
                t0 = time.perf_counter()
                hits = r.collection.search(
                    index,
                    "text",
                    k + 1,
                    None,
                    None,
                    vec if self.mode == "hybrid" else None,
                    text,
                    self.mode,
                    self.fusion,
                )
                ms = (time.perf_counter() - t0) * 1e3
            took.append(ms)
            ranked[q] = [h.id for h in hits if h.id != q][:k]
        return ranked, took


def _environment(settings: Settings) -> dict[str, Any]:
    from importlib import metadata

    from benchmarks.runner import environment

    env = environment(settings.threads or os.cpu_count() or 1)
    for pkg in ("ir-measures", "pytrec-eval-terrier"):
        try:
            env["versions"][pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env["versions"][pkg] = "not installed"
    return env
