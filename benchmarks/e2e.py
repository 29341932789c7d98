"""End-to-end text queries (encode → search → payload) and ingestion wall time against the encoder alone."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.datasets import Dataset
from benchmarks.metrics import percentiles
from retrieval.encoders import Encoder, load_encoder
from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import open_store

E2E_STORES = ("flat", "ivf", "ivfpq", "hnsw", "qdrant")


def _encoder(settings: Settings, quantize: str | None = None) -> Encoder:
    """The text encoder of ``settings`` (or of its ``quantize`` tier), through the one loader."""
    if quantize is not None:
        settings = settings.model_copy(update={"text_quantize": quantize})
    return load_encoder(settings, "text")


def stsb_spearman(enc: Encoder) -> float:
    """STS-B test Spearman of an encoder (cosine of each pair against the gold score)."""
    from scipy.stats import spearmanr

    from ingest.corpora.stsb import read_pairs

    pairs = read_pairs("test")
    a = enc.encode_text([p.s1 for p in pairs], batch_size=128)
    b = enc.encode_text([p.s2 for p in pairs], batch_size=128)
    return float(spearmanr((a * b).sum(1), [p.score for p in pairs]).statistic)


def encoder_variants(enc: Encoder, texts: list[str]) -> dict[str, Any]:
    """One-query encode latency under the settings that matter on a CPU: threads, and the query cache."""
    import torch

    out: dict[str, Any] = {}
    before = torch.get_num_threads()
    for t in sorted({1, 2, before}):
        torch.set_num_threads(t)
        enc.encode_text(texts[:3])  # warm-up
        lat = []
        for s in texts:
            t0 = time.perf_counter()
            enc.encode_text([s])
            lat.append(time.perf_counter() - t0)
        out[f"threads={t}"] = percentiles(lat)
    torch.set_num_threads(before)
    for s in texts:
        enc.encode_query(s)
    lat = []
    for s in texts:
        t0 = time.perf_counter()
        enc.encode_query(s)
        lat.append(time.perf_counter() - t0)
    out["query-cache-hit"] = percentiles(lat)
    return out


def end_to_end(settings: Settings, ds: Dataset, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """p50/p95 of text → encode → search → payload for the default model and each store."""
    enc = _encoder(settings)
    texts = ds.query_texts[: 50 if quick else 200]
    ids = ds.point_ids()
    payloads = [{"text": t} for t in ds.base_texts] if ds.base_texts else None
    out: dict[str, Any] = {"model": settings.text_model, "queries": len(texts), "stores": {}}
    with tempfile.TemporaryDirectory(prefix="simlookup-e2e-") as tmp:
        s = Settings(data_dir=Path(tmp), qdrant=QdrantSettings(mode="edge", full_scan_threshold_kb=10))
        for index in E2E_STORES:
            st = open_store(s, "e2e", index, dim=ds.dim)
            try:
                st.upsert(ids, ds.xb, payloads)
                st.build()
                enc.encode_text(texts[:2])
                lat, enc_lat = [], []
                for t in texts:
                    t0 = time.perf_counter()
                    vec = enc.encode_text([t])[0]
                    t1 = time.perf_counter()
                    hits = st.search(vec, 10)[0]
                    assert hits and "text" in hits[0].payload or payloads is None
                    lat.append(time.perf_counter() - t0)
                    enc_lat.append(t1 - t0)
                out["stores"][index] = {**percentiles(lat, (50, 95)), "encode_p50_ms": float(np.median(enc_lat) * 1e3)}
                log(f"  e2e {index:<6} p50 {out['stores'][index]['p50_ms']:.2f} ms")
            finally:
                st.close()
    out["encoder"] = encoder_variants(enc, texts)
    # the faster tier: int8 dynamic quantization (SIMLOOKUP_TEXT_QUANTIZE=int8), its latency and its quality
    q8 = _encoder(settings, "int8")
    q8.encode_text(texts[:3])
    lat8 = []
    for t in texts:
        t0 = time.perf_counter()
        q8.encode_text([t])
        lat8.append(time.perf_counter() - t0)
    out["encoder"]["int8 (SIMLOOKUP_TEXT_QUANTIZE=int8)"] = percentiles(lat8)
    if not quick:
        out["stsb_spearman"] = {"fp32": stsb_spearman(enc), "int8": stsb_spearman(q8)}
    if ds.base_texts:
        # the int8 tier end to end: documents encoded by the same int8 model as the queries (the Retriever
        # refuses an fp32 collection with int8 queries, so this is the pairing a user can run)
        t0 = time.perf_counter()
        xb8 = q8.encode_text(ds.base_texts, batch_size=128)
        out["int8_documents_encode_s"] = time.perf_counter() - t0
        out["stores"]["hnsw + int8 encoder"] = _int8_row(ds, ids, xb8, payloads, q8, texts, out, log)
    return out


def _int8_row(
    ds: Dataset,
    ids: list[str],
    xb8: np.ndarray,
    payloads: list[dict[str, Any]] | None,
    q8: Any,
    texts: list[str],
    out: dict[str, Any],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """hnsw over int8-encoded documents, queried by the int8 encoder."""
    with tempfile.TemporaryDirectory(prefix="simlookup-e2e8-") as tmp:
        s = Settings(data_dir=Path(tmp), qdrant=QdrantSettings(mode="edge", full_scan_threshold_kb=10))
        st = open_store(s, "e2e", "hnsw", dim=ds.dim)
        try:
            st.upsert(ids, xb8, payloads)
            lat = []
            for t in texts:
                t0 = time.perf_counter()
                st.search(q8.encode_text([t])[0], 10)
                lat.append(time.perf_counter() - t0)
            row = {
                **percentiles(lat, (50, 95)),
                "encode_p50_ms": out["encoder"]["int8 (SIMLOOKUP_TEXT_QUANTIZE=int8)"]["p50_ms"],
                "documents": "int8 tier",
            }
            log(f"  e2e hnsw + int8 encoder (int8 documents) p50 {row['p50_ms']:.2f} ms")
            return row
        finally:
            st.close()


def ingest_overhead(settings: Settings, rows: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Ingest wall time (all four FAISS kinds + Qdrant Edge, cold cache) against encoding the same rows alone."""
    from ingest.corpora import get_corpus
    from ingest.job import IngestOptions, run_ingest

    enc = _encoder(settings)
    texts = get_corpus("stsb").load(limit=rows)["text"]
    enc.encode_text(texts[:64])
    t0 = time.perf_counter()
    enc.encode_text(texts, batch_size=settings.batch_size)
    encode_only = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="simlookup-ingest-") as tmp:
        s = settings.model_copy(update={"data_dir": Path(tmp)})
        t0 = time.perf_counter()
        summ = run_ingest(s, IngestOptions("stsb", "ingest-bench", limit=rows, progress=False), encoders={"text": enc})
        wall = time.perf_counter() - t0
    log(f"  ingest {rows} rows: {wall:.1f} s vs encoder alone {encode_only:.1f} s ({wall / encode_only:.2f}×)")
    return {
        "rows": rows,
        "encoder_only_s": encode_only,
        "ingest_wall_s": wall,
        "ratio": wall / encode_only,
        "stages_s": summ.seconds,
        "indexes": summ.indexes,
    }
