"""The calls the store targets time and their (c) and (d) rows: simlookup's layer and the raw faiss call on the
same index, with the same query parameters.

(d)'s raw call searches the store's own faiss index object (``faiss_index``; flat: ``faiss.knn`` over the store's
own rows, ``stored_vectors()``), so layer and raw read the same memory; a second copy of the index (``read_index``
of the file the store's folder names) is timed beside it. The payload-free search (``with_payload=False``) is
timed in turn with the two.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.claims import compute, target_row
from benchmarks.metrics import knn_recalls
from benchmarks.timing import block_p50s
from retrieval.stores import SearchParams, VectorStore
from retrieval.stores.faiss_store import FaissStore

K = 10
METRIC = "cosine"  # the stores' default, and the data's (unit vectors)
NPROBE = 48
HNSW_EF = 64
RERANK = 10


def _ints(hits: Sequence[Any]) -> list[int]:
    return [int(h.id[1:]) for h in hits]


def found_positions(res: Sequence[Sequence[Any]]) -> np.ndarray:
    """Hit lists → (n, K) base positions (id "p<i>" is row i), -1 where fewer hits."""
    out = np.full((len(res), K), -1, dtype=np.int64)
    for i, hits in enumerate(res):
        row = _ints(hits)[:K]
        out[i, : len(row)] = row
    return out


def recalls(res: Sequence[Sequence[Any]], truth: np.ndarray, xq: np.ndarray, xb: np.ndarray) -> dict[str, float]:
    """recall@10 (ties credited) and id_recall@10 of hit lists against exact top-K positions."""
    return knn_recalls(found_positions(res), truth, xq, xb, METRIC, (K,))


def raw_index(store: VectorStore) -> Any:
    """faiss.read_index of the index file the store's manifest names (after a flush), or None (flat)."""
    import faiss

    folder = Path(store.info()["path"])
    manifest = json.loads((folder / "manifest.json").read_text())
    name = manifest.get("index_file")
    return faiss.read_index(str(folder / name)) if name else None


def first_search(st: Any, flt: dict[str, Any], params: Any, q: np.ndarray) -> Any:
    return st.search(q, K, filter=flt, params=params)[0]


def _layer_search(st: Any, k: int, params: Any, q: np.ndarray, with_payload: bool = True) -> Any:
    return st.search(q, k, params=params, with_payload=with_payload)


def _raw_search(raw: Any, k: int, params: Any, q: np.ndarray) -> Any:
    return raw.search(q, k, params=params)


def _knn(xb: np.ndarray, q: np.ndarray) -> Any:
    import faiss

    return faiss.knn(q, xb, K, faiss.METRIC_INNER_PRODUCT)


def raw_params(kind: str, k: int) -> Any:
    import faiss

    if kind in ("ivf", "ivfpq"):
        return faiss.SearchParametersIVF(nprobe=NPROBE)  # type: ignore[call-arg]  # stubs list only __init__(self)
    if kind == "hnsw":
        return faiss.SearchParametersHNSW(efSearch=max(HNSW_EF, k))  # type: ignore[attr-defined]  # missing in stubs
    return None


def layer_params(kind: str, rerank: int | None = None) -> SearchParams:
    """The same query parameters the raw call gets (ivfpq: re-rank off unless asked)."""
    if kind in ("ivf", "ivfpq"):
        return SearchParams(nprobe=NPROBE, rerank=rerank if kind == "ivfpq" else None)
    if kind == "hnsw":
        return SearchParams(hnsw_ef=HNSW_EF)
    return SearchParams()


# ---- (c) and (d) ----
def layer_overhead(
    n: int,
    stores: dict[str, VectorStore],
    xb: np.ndarray,
    xq: np.ndarray,
    queries: int,
    repeats: int,
    warmup: int,
    add: Callable[[dict[str, Any]], None],
) -> None:
    """(d) layer − raw faiss per FAISS kind, with and without payloads; (c) ivfpq re-rank ×10 against off.

    Each row goes to ``add`` as soon as it is measured."""
    import faiss

    _, gt = faiss.knn(xq, xb, K, faiss.METRIC_INNER_PRODUCT)
    for kind, st in stores.items():
        assert isinstance(st, FaissStore)
        raw = raw_index(st)
        own = st.faiss_index
        # the same index object (flat: faiss's brute force over the store's own rows); and a second copy
        rawf: Callable[[np.ndarray], Any] = (
            partial(_knn, st.stored_vectors()) if own is None else partial(_raw_search, own, K, raw_params(kind, K))
        )
        copyf: Callable[[np.ndarray], Any] = (
            partial(_knn, xb) if raw is None else partial(_raw_search, raw, K, raw_params(kind, K))
        )
        lp = layer_params(kind, 0 if kind == "ivfpq" else None)
        nq = queries if kind != "flat" else max(10, queries // 3)  # flat: ~6 ms a query at 100k
        # flat: a 6 ms scan drifts by ±5% between blocks, more than the layer's cost: more repeats
        reps = repeats if kind != "flat" else 2 * repeats - 1
        layer, bare, rawp = block_p50s(
            [partial(_layer_search, st, K, lp), partial(_layer_search, st, K, lp, with_payload=False), rawf],
            xq[:nq],
            reps,
            warmup,
        )
        hits = st.search(xq[:nq], K, params=lp)
        found = [_ints(h) for h in hits]
        bare_found = [_ints(h) for h in st.search(xq[:nq], K, params=lp, with_payload=False)]
        raw_found = rawf(xq[:nq])[1]
        same = float(np.mean([set(a) == set(b.tolist()) for a, b in zip(found, raw_found, strict=True)]))
        copy_p, own_p = block_p50s([copyf, rawf], xq[:nq], reps, warmup)
        rec = recalls(hits, gt[:nq], xq[:nq], xb)
        add(
            target_row(
                "d",
                f"{kind}, N={n:,}",
                "median_diff",
                {"a": layer, "b": rawp},
                "µs",
                {"layer and raw return the same ids": same >= 0.99},
                kind=kind,
                size=n,
                queries=nq,
                same_ids_fraction=same,
                layer_p50_us=float(np.median(layer)),
                raw_p50_us=float(np.median(rawp)),
                recall_at_10=rec["recall@10"],
                id_recall_at_10=rec["id_recall@10"],
                raw_call=(
                    "faiss.knn over the store's own rows (stored_vectors())"
                    if own is None
                    else "the store's own faiss index object (faiss_index).search"
                ),
                no_payload={
                    "call": "store.search(..., with_payload=False): ids and scores, no payload copies",
                    "p50_us": float(np.median(bare)),
                    "minus_raw_us": compute("median_diff", {"a": bare, "b": rawp}),
                    "inputs": {"a": bare, "b": rawp},
                    "same_ids_as_layer": float(np.mean([a == b for a, b in zip(found, bare_found, strict=True)])),
                    "how": "timed in turn with the layer and the raw call (blocks, which goes first rotating)",
                },
                second_copy={
                    "call": (
                        "faiss.knn over the benchmark's own array of the same vectors"
                        if raw is None
                        else f"faiss.read_index(<store>/{kind}/index.faiss).search"
                    ),
                    "p50_us": float(np.median(copy_p)),
                    "minus_own_index_us": compute("median_diff", {"a": copy_p, "b": own_p}),
                    "how": "the raw call on the second copy against the raw call on the store's own, timed "
                    "like the row",
                },
            )
        )
        if kind == "ivfpq":
            rerank_cost(n, st, own, xq, xb, gt, repeats, warmup, add)


def rerank_cost(
    n: int,
    st: VectorStore,
    own: Any,
    xq: np.ndarray,
    xb: np.ndarray,
    gt: np.ndarray,
    repeats: int,
    warmup: int,
    add: Callable[[dict[str, Any]], None],
) -> None:
    """(c) ivfpq re-rank ×10 against re-rank off on the same store; the faiss part (fetching k×10) split off."""
    on, off = block_p50s(
        [
            partial(_layer_search, st, K, layer_params("ivfpq", RERANK)),
            partial(_layer_search, st, K, layer_params("ivfpq", 0)),
        ],
        xq,
        repeats,
        warmup,
    )
    r100, r10 = block_p50s(
        [
            partial(_raw_search, own, K * RERANK, raw_params("ivfpq", K)),
            partial(_raw_search, own, K, raw_params("ivfpq", K)),
        ],
        xq,
        repeats,
        warmup,
    )
    rec_on = recalls(st.search(xq, K, params=layer_params("ivfpq", RERANK)), gt, xq, xb)
    rec_off = recalls(st.search(xq, K, params=layer_params("ivfpq", 0)), gt, xq, xb)
    faiss_part = float(np.median(np.subtract(r100, r10)))
    add(
        target_row(
            "c",
            f"ivfpq, N={n:,}, nprobe {NPROBE}, rerank {RERANK} vs off",
            "median_diff",
            {"a": on, "b": off},
            "µs",
            {},
            kind="ivfpq",
            size=n,
            recall_at_10={"rerank": rec_on["recall@10"], "off": rec_off["recall@10"]},
            id_recall_at_10={"rerank": rec_on["id_recall@10"], "off": rec_off["id_recall@10"]},
            faiss_fetch_k100_minus_k10_us=faiss_part,
            rerank_step_only_us=compute("median_diff", {"a": on, "b": off}) - faiss_part,
        )
    )
