"""The benchmark datasets: stsb (real MiniLM embeddings from the ingestion cache), fashion-mnist, synthetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.datasets import Dataset, clustered
from benchmarks.names import DATASETS
from retrieval.errors import InvalidInputError
from retrieval.settings import Settings


def stsb_vectors(
    settings: Settings, cache_dir: Path, limit: int | None = None
) -> tuple[list[str], np.ndarray, list[str]]:
    """(ids, vectors, texts) of STS-B, encoded once into an embedding cache under cache_dir (never the data dir)."""
    from ingest.cache import EmbeddingCache
    from ingest.corpora import get_corpus
    from ingest.job import IngestOptions, run_ingest
    from retrieval.encoders import load_encoder

    scratch = settings.model_copy(update={"data_dir": Path(cache_dir)})
    enc = load_encoder(settings, "text")
    corpus = get_corpus("stsb")
    # an ingest with no stores only fills the embedding cache (and reuses what is there); it writes under cache_dir
    run_ingest(
        scratch,
        IngestOptions("stsb", "bench-stsb-cache", indexes=[], qdrant="none", limit=limit, progress=False,
                      embed_only=True),
        encoders={"text": enc},
    )
    ids, vecs = EmbeddingCache(scratch.data_dir, enc.fingerprint, corpus.fingerprint(), "text").vectors()
    ds = corpus.load(limit=limit)
    text_of = dict(zip(ds["id"], ds["text"], strict=True))
    keep = [i for i, pid in enumerate(ids) if pid in text_of]
    return [ids[i] for i in keep], vecs[keep], [text_of[ids[i]] for i in keep]


def load(
    name: str,
    settings: Settings,
    quick: bool,
    scale: int | None,
    nq: int | None,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> Dataset:
    """Base vectors and held-out queries of one benchmark dataset (stsb needs cache_dir for its embeddings)."""
    rng = np.random.default_rng(seed)
    if name == "stsb":
        if cache_dir is None:
            raise InvalidInputError("the stsb benchmark needs a folder for its embedding cache")
        ids, vecs, texts = stsb_vectors(settings, cache_dir, limit=scale or (3000 if quick else None))
        n_q = nq or (200 if quick else 1000)
        perm = rng.permutation(len(ids))
        qi, bi = np.sort(perm[:n_q]), np.sort(perm[n_q:])
        return Dataset(
            "stsb",
            vecs[bi],
            vecs[qi],
            "cosine",
            [ids[i] for i in bi],
            base_texts=[texts[i] for i in bi],
            query_texts=[texts[i] for i in qi],
        )
    if name == "fashion-mnist":
        from ingest.corpora.fashion_mnist import read_split

        xb, _ = read_split("train")
        xq, _ = read_split("test")
        xb = xb.reshape(len(xb), -1).astype(np.float32)
        xq = xq.reshape(len(xq), -1).astype(np.float32)
        if quick or scale:
            xb = xb[: scale or 10_000]
        xq = xq[: nq or (200 if quick else 10_000)]
        return Dataset("fashion-mnist-784-euclidean", xb, xq, "l2")
    if name == "synthetic":
        n = scale or (20_000 if quick else 100_000)
        return clustered(n=n, d=128 if quick else 384, nq=nq or (200 if quick else 1000), seed=seed)
    raise InvalidInputError(f"unknown benchmark dataset {name!r}: use one of {list(DATASETS)}")


def ground_truth(ds: Dataset, k: int) -> np.ndarray:
    """Exact top-k positions with faiss IndexFlat (inner product for cosine, L2 otherwise)."""
    import faiss

    index = faiss.IndexFlatL2(ds.dim) if ds.metric == "l2" else faiss.IndexFlatIP(ds.dim)
    xb, xq = ds.xb, ds.xq
    if ds.metric == "cosine":
        xb = xb / np.linalg.norm(xb, axis=1, keepdims=True)
        xq = xq / np.linalg.norm(xq, axis=1, keepdims=True)
    index.add(np.ascontiguousarray(xb, dtype=np.float32))
    _, idx = index.search(np.ascontiguousarray(xq, dtype=np.float32), min(k, len(xb)))
    return idx
