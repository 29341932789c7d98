"""The keyword leg against ``bm25s`` and LangChain's ``BM25Retriever`` (issue 27 item 4).

    python -m benchmarks.keyword_bench --out benchmarks/results/hybrid/keyword

On each shipped judged set (``lee``, ``stsb-paraphrase``, ``stsb-parts``) and on a 15,000-document speed corpus
(the first 15,000 unique sentences of STS-B's train, dev and test splits, 1,000 of them, drawn with a fixed seed,
as queries), the same documents are searched by:

- simlookup's keyword leg through ``Collection.search(index, text=..., mode="keyword")`` on FAISS (``flat``: the
  inverted index every FAISS kind shares) and Qdrant Edge (the sparse named vector), hits with their payloads;
- ``bm25s`` (``method="lucene"``, k1 1.5, b 0.75) indexed on the **same tokens** (simlookup's tokenizer), queried
  with ``retrieve`` (documents holding no query term dropped, as the keyword leg returns none);
- LangChain's ``BM25Retriever`` (langchain-community, on ``rank_bm25.BM25Okapi``) with simlookup's tokenizer as its
  ``preprocess_func``, queried with ``invoke`` (skipped, with the reason, when langchain-community or rank-bm25 is
  not installed: ``pip install --no-deps 'rank-bm25==0.2.2' 'langchain-community==0.4.2'``).

Each query runs alone on each engine in turn (interleaved, so that the shared machine's load falls on all alike),
at k + 1 with the query's own id dropped as ``simlookup eval`` does; nDCG@10 comes from the same ``ir_measures``
path as ``simlookup eval``. The collections are written through the normal ingest path with vectors brought as
they are (8-d, seeded: the keyword leg does not read them). Targets: nDCG@10 within 0.005 of bm25s on every set;
per query at least 10x faster than LangChain's BM25Retriever at 15k documents.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.relevance import metrics, ranked_run
from retrieval.keyword.tokenize import tokenize
from retrieval.settings import QdrantSettings, Settings

SETS = ("lee", "stsb-paraphrase", "stsb-parts")
SPEED_SET = "stsb-15k"
SPEED_DOCS = 15_000
SPEED_QUERIES = 1_000
QUALITY_TOLERANCE = 0.005  # nDCG@10 of the keyword leg against bm25s on the same tokens
SPEEDUP_TARGET = 10.0  # per query, against LangChain's BM25Retriever at 15k documents
K = 10
REF = "bm25s ties by id"  # the top-10 overlap column is against bm25s' scores under simlookup's tie rule


@dataclass
class Corpus:
    """Documents, queries and judgments (empty for the speed corpus) of one run."""

    name: str
    ids: list[str]
    texts: list[str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)


def judged_corpus(data_dir: Path, name: str) -> Corpus:
    """A shipped judged set as the eval ingests it (text = title + text)."""
    from ingest.beir import read_beir
    from ingest.judged_sets import judged_set_folder

    data = read_beir(judged_set_folder(data_dir, name))
    ids = list(data.docs)
    return Corpus(name, ids, [data.docs[i].content for i in ids], dict(data.queries), data.qrels)


def speed_corpus() -> Corpus:
    """The first 15,000 unique STS-B sentences (train, dev, test), 1,000 of them as queries (seeded)."""
    from ingest.corpora.stsb import read_pairs

    sents = list(dict.fromkeys(s for sp in ("train", "dev", "test") for p in read_pairs(sp) for s in (p.s1, p.s2)))
    sents = sents[:SPEED_DOCS]
    picked = np.random.default_rng(15).choice(len(sents), SPEED_QUERIES, replace=False)
    return Corpus(SPEED_SET, [f"s{i}" for i in range(len(sents))], sents, {f"s{i}": sents[i] for i in picked})


def build_collection(settings: Settings, c: Corpus) -> float:
    """Write the corpus into collection ``c.name`` (flat + Qdrant Edge) through the ingest path, vectors brought
    as they are; the ingest builds the keyword leg. Seconds taken."""
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    from ingest.job import IngestOptions, run_ingest

    path = settings.data_dir / f"{c.name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    vecs = np.random.default_rng(0).standard_normal((len(c.ids), 8)).astype(np.float32)
    pq.write_table(pa.table({"id": c.ids, "text": c.texts, "vector": list(vecs)}), path)
    t0 = time.perf_counter()
    run_ingest(settings, IngestOptions(str(path), c.name, indexes=["flat"], vector_column="vector", progress=False))
    return time.perf_counter() - t0


Engine = Callable[[str, int], list[str]]  # (query, k) -> ids, best first


def simlookup_engine(coll: Any, index: str) -> Engine:
    def search(q: str, k: int) -> list[str]:
        return [h.id for h in coll.search(index, text=q, k=k, mode="keyword")]

    return search


def bm25s_engine(c: Corpus) -> tuple[Engine, Engine, float, str]:
    """bm25s on simlookup's tokens: (search, search with ties in id order, build seconds, label)."""
    from importlib import metadata

    import bm25s  # type: ignore[import-untyped]

    t0 = time.perf_counter()
    ref = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    ref.index([tokenize(t) for t in c.texts], show_progress=False)
    built = time.perf_counter() - t0

    def search(q: str, k: int) -> list[str]:
        docs, scores = ref.retrieve([tokenize(q)], k=min(k, len(c.ids)), show_progress=False)
        return [c.ids[d] for d, s in zip(docs[0].tolist(), scores[0].tolist(), strict=True) if s > 0]

    def by_id(q: str, k: int) -> list[str]:
        """bm25s' scores, every document tied with the k-th kept and ties put in id order (simlookup's rule)."""
        scores = np.asarray(ref.get_scores(tokenize(q)), dtype=np.float64)
        hit = np.flatnonzero(scores > 0)
        if len(hit) > k:
            cut = np.partition(scores[hit], len(hit) - k)[len(hit) - k]
            hit = hit[scores[hit] >= cut * (1 - 1e-6)]
        return [c.ids[d] for d in sorted(hit.tolist(), key=lambda d: (-round(float(scores[d]), 5), c.ids[d]))][:k]

    return search, by_id, built, f"bm25s {metadata.version('bm25s')} (lucene, k1 1.5, b 0.75, simlookup's tokens)"


def langchain_engine(c: Corpus) -> tuple[Engine, float, str] | str:
    """LangChain's BM25Retriever with simlookup's tokenizer: (search, build seconds, label), or why not."""
    from importlib import metadata

    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from langchain_community.retrievers import BM25Retriever
        t0 = time.perf_counter()
        ret = BM25Retriever.from_texts(c.texts, metadatas=[{"id": i} for i in c.ids], preprocess_func=tokenize)
        built = time.perf_counter() - t0
    except ImportError as exc:  # langchain-community, or the rank-bm25 its BM25Retriever needs
        return f"not installed ({exc}): pip install --no-deps 'rank-bm25==0.2.2' 'langchain-community==0.4.2'"

    def search(q: str, k: int) -> list[str]:
        ret.k = k
        return [d.metadata["id"] for d in ret.invoke(q)]

    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("langchain-community", "rank-bm25"))
    return search, built, f"LangChain BM25Retriever ({versions}; BM25Okapi, simlookup's tokenizer)"


def run_corpus(settings: Settings, c: Corpus, log: Callable[[str], None]) -> dict[str, Any]:
    """Every engine on every query of one corpus: nDCG@10 (judged sets) and per-query time."""
    from retrieval.collection import Collection

    ingest_s = build_collection(settings, c)
    engines: dict[str, Engine] = {}
    labels: dict[str, str] = {}
    built: dict[str, float] = {"simlookup (ingest, flat + Qdrant Edge, keyword leg included)": ingest_s}
    notes: list[str] = []
    with Collection(settings, c.name) as coll:
        assert coll.manifest.keyword is not None
        for index in ("flat", "qdrant"):
            engines[f"simlookup {index}"] = simlookup_engine(coll, index)
            labels[f"simlookup {index}"] = f"simlookup keyword leg, {index} ({coll.manifest.keyword.tokenizer})"
            engines[f"simlookup {index}"]("warm up", 1)  # the FAISS leg is read from its files on first use
        search, by_id, secs, label = bm25s_engine(c)
        engines["bm25s"], labels["bm25s"], built["bm25s"] = search, label, secs
        engines["bm25s ties by id"] = by_id
        labels["bm25s ties by id"] = "bm25s' scores (get_scores), ties put in id order as simlookup does"
        lc = langchain_engine(c)
        if isinstance(lc, str):
            notes.append(f"LangChain BM25Retriever: {lc}")
        else:
            engines["langchain"], built["langchain"], labels["langchain"] = lc
        ranked: dict[str, dict[str, list[str]]] = {e: {} for e in engines}
        took: dict[str, list[float]] = {e: [] for e in engines}
        for n, (qid, text) in enumerate(c.queries.items()):
            for e, fn in engines.items():
                t0 = time.perf_counter()
                ids = fn(text, K + 1)
                took[e].append((time.perf_counter() - t0) * 1e3)
                ranked[e][qid] = [i for i in ids if i != qid][:K]
            if (n + 1) % 250 == 0:
                log(f"{c.name}: {n + 1}/{len(c.queries)} queries")
    rows = []
    for e in engines:
        row: dict[str, Any] = {"engine": e, "label": labels[e], "p50_ms": statistics.median(took[e]),
                               "mean_ms": statistics.fmean(took[e])}
        if c.qrels:
            row["ndcg@10"] = metrics(c.qrels, ranked_run(ranked[e]), K)["ndcg@10"]
        if e != REF:
            ref = ranked[REF]
            row["top10_overlap_bm25s"] = float(
                np.mean([len(set(ranked[e][q]) & set(ref[q])) / max(1, min(K, len(ref[q]))) for q in c.queries])
            )
        rows.append(row)
        log(f"{c.name} {e}: " + (f"nDCG@10 {row['ndcg@10']:.4f} " if "ndcg@10" in row else "")
            + f"p50 {row['p50_ms']:.3f} ms")
    return {"corpus": c.name, "documents": len(c.ids), "queries": len(c.queries), "rows": rows,
            "build_seconds": built, "notes": notes}


def verdicts(runs: list[dict[str, Any]]) -> list[str]:
    """The issue's keyword-leg targets on these runs."""
    out = []
    for r in runs:
        rows = {x["engine"]: x for x in r["rows"]}
        for base in ("bm25s", "bm25s ties by id"):
            if "ndcg@10" not in rows[base]:
                continue
            ref = rows[base]["ndcg@10"]
            for e in ("simlookup flat", "simlookup qdrant"):
                d = rows[e]["ndcg@10"] - ref
                out.append(f"[{'ok' if abs(d) <= QUALITY_TOLERANCE else 'NO'}] {r['corpus']}: {e} nDCG@10 "
                           f"{rows[e]['ndcg@10']:.4f} within {QUALITY_TOLERANCE} of {base} {ref:.4f} ({d:+.4f})")
        if r["corpus"] == SPEED_SET and "langchain" in rows:
            lc = rows["langchain"]["p50_ms"]
            for e in ("simlookup flat", "simlookup qdrant"):
                x = lc / rows[e]["p50_ms"]
                out.append(f"[{'ok' if x >= SPEEDUP_TARGET else 'NO'}] {r['corpus']} ({r['documents']:,} documents): "
                           f"{e} p50 {rows[e]['p50_ms']:.3f} ms, {x:.1f}x faster than LangChain's BM25Retriever "
                           f"({lc:.2f} ms; target {SPEEDUP_TARGET:.0f}x)")
        elif r["corpus"] == SPEED_SET:
            out.append(f"[--] {r['corpus']}: LangChain's BM25Retriever not measured ({'; '.join(r['notes'])})")
    return out


def report(result: dict[str, Any]) -> str:
    """report.md of a run."""
    env = result["environment"]
    md = ["# Keyword leg against bm25s and LangChain's BM25Retriever", "",
          "Each query alone on each engine in turn (interleaved), k = 11 with the query's own id dropped; nDCG@10 "
          "by ir_measures as `simlookup eval`. simlookup's times are `Collection.search(..., mode=\"keyword\")` "
          "with payloads; bm25s' `retrieve` returns ids; LangChain's `invoke` returns Documents.", ""]
    for r in result["runs"]:
        md += [f"## {r['corpus']}: {r['documents']:,} documents, {r['queries']:,} queries", "",
               "| engine | nDCG@10 | top-10 ∩ bm25s (ties by id) | p50 ms | mean ms |",
               "| --- | --- | --- | --- | --- |"]
        for x in r["rows"]:
            nd = f"{x['ndcg@10']:.4f}" if "ndcg@10" in x else "-"
            ov = f"{x['top10_overlap_bm25s']:.3f}" if "top10_overlap_bm25s" in x else "-"
            md.append(f"| {x['label']} | {nd} | {ov} | {x['p50_ms']:.3f} | {x['mean_ms']:.3f} |")
        md += ["", "Build seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in r["build_seconds"].items()), ""]
        md += [f"Note: {n}" for n in r["notes"]]
    md += ["## Targets", "", *[f"- {v}" for v in result["verdicts"]], "",
           f"Machine: {env['cpu']}, {env['cores']} cores, load average "
           f"{', '.join(f'{v:.2f}' for v in env['load_average'])} at the end; {env['date']}. Versions: "
           + ", ".join(f"{p} {v}" for p, v in env["versions"].items()), ""]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.keyword_bench", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for results.json and report.md")
    p.add_argument("--data-dir", help="where the collections are written (default: OUT/data, removed after)")
    p.add_argument("--sets", default=",".join([*SETS, SPEED_SET]), help="corpora, comma-separated")
    args = p.parse_args(argv)
    out = Path(args.out)
    data_dir = Path(args.data_dir) if args.data_dir else out / "data"
    settings = Settings(data_dir=data_dir, qdrant=QdrantSettings(mode="edge"))
    runs = []
    for name in [s for s in args.sets.split(",") if s]:
        c = speed_corpus() if name == SPEED_SET else judged_corpus(data_dir, name)
        runs.append(run_corpus(settings, c, lambda line: print(line, flush=True)))
    from benchmarks.runner import environment

    env = environment(settings.threads or os.cpu_count() or 1)
    checks = verdicts(runs)
    result = {"runs": runs, "verdicts": checks, "environment": env}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "report.md").write_text(report(result))
    print("\n".join(checks))
    if not args.data_dir:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
