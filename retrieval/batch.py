"""Many queries through one retriever at once: one encode per vector space, one store search per group.

The service's micro-batcher hands every query that arrived within its window to ``search_batch``; a batch of one
is the unbatched path, so batching on and off run the same code. Dense queries are grouped for the search by
(index, k, target, filter, params); keyword and hybrid queries (``mode``) are searched one by one through the
collection facade (a hybrid query's vector still comes from the batch's one encode, a keyword query is not
encoded); a query that fails (empty text, broken image, unknown filter field, no keyword leg) gets its own error
and the rest of the batch still gets answers.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from retrieval.collection import VectorSpace
from retrieval.errors import InvalidInputError, SimlookupError
from retrieval.filters import Filter
from retrieval.hybrid import check_mode
from retrieval.keyword.fusion import Fusion
from retrieval.keyword.terms import query_terms
from retrieval.retriever import Retriever, SearchResult, check_query
from retrieval.stores import SearchParams

QueryKind = Literal["text", "image"]


@dataclass(frozen=True)
class Query:
    """One query of a batch: a text or an image (bytes, path or PIL image) and where to search it."""

    kind: QueryKind
    item: Any
    index: str = "flat"
    k: int = 10
    filter: Filter = Filter()
    params: SearchParams = SearchParams()
    target: str | None = None
    mode: str = "dense"  # dense | keyword | hybrid (retrieval.hybrid)
    fusion: Fusion | None = None  # hybrid: how the legs are fused (None: the settings')

    def label(self) -> str:
        """What the answer calls the query: the text itself, or a placeholder for an image."""
        return self.item if self.kind == "text" else "<image>"


def default_target(retriever: Retriever, kind: QueryKind) -> str:
    """The vector space a query searches when none is named: text for text collections, else image."""
    if kind == "image":
        return "image"
    return "text" if retriever.manifest.modality == "text" else "image"


def search_batch(retriever: Retriever, queries: Sequence[Query]) -> list[SearchResult | SimlookupError]:
    """Answer each query, in order: a SearchResult, or the project error that query alone raised."""
    out: list[SearchResult | SimlookupError | None] = [None] * len(queries)
    vectors: dict[int, np.ndarray] = {}
    encode_ms: dict[int, float] = {}
    by_space: dict[tuple[QueryKind, str], list[int]] = defaultdict(list)
    for i, q in enumerate(queries):
        try:  # the settings' caps on k, ef, nprobe and re-rank, as Retriever.search applies them
            check_query(q.k, q.params, retriever.settings.limits)
            if check_mode(q.mode) != "dense" and q.kind != "text":
                raise InvalidInputError(f"a {q.mode} search takes a text query (image queries search by vector only)")
        except InvalidInputError as exc:
            out[i] = exc
            continue
        if q.mode != "keyword":  # a keyword query is not encoded
            by_space[(q.kind, q.target or default_target(retriever, q.kind))].append(i)
    for (kind, target), idx in by_space.items():
        t0 = time.perf_counter()
        for i, vec in _encode(retriever, kind, target, [queries[i] for i in idx], idx).items():
            if isinstance(vec, SimlookupError):
                out[i] = vec
            else:
                vectors[i] = vec
        ms = (time.perf_counter() - t0) * 1e3
        encode_ms.update({i: ms for i in idx})
    for i, q in enumerate(queries):
        if q.mode != "dense" and out[i] is None:
            out[i] = _search_one(retriever, q, vectors.get(i), encode_ms.get(i), len(queries))
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i in vectors:
        q = queries[i]
        if q.mode != "dense":
            continue
        groups[(q.index, q.k, q.target or default_target(retriever, q.kind), q.filter, q.params)].append(i)
    for (index, k, target, flt, params), idx in groups.items():
        t0 = time.perf_counter()
        try:
            hits = retriever.store(index, target).search(np.stack([vectors[i] for i in idx]), k, flt, params)
        except Exception as exc:  # noqa: BLE001 - this group's error; the other groups still answer
            err = exc if isinstance(exc, SimlookupError) else SimlookupError(f"search failed ({exc!r})")
            for i in idx:
                out[i] = err
            continue
        ms = (time.perf_counter() - t0) * 1e3
        for i, h in zip(idx, hits, strict=True):
            timings = {"encode_ms": encode_ms[i], "search_ms": ms, "batch": float(len(queries))}
            notes = retriever.warnings(index, target, params)
            out[i] = SearchResult(queries[i].label(), index, encode_ms[i] + ms, h, target, timings, notes)
    return [r if r is not None else InvalidInputError("query not answered") for r in out]


def _search_one(
    retriever: Retriever, q: Query, vector: np.ndarray | None, encode_ms: float | None, size: int
) -> SearchResult | SimlookupError:
    """A keyword or hybrid query through the collection facade (both legs under the query's filter, fused)."""
    target = q.target or default_target(retriever, q.kind)
    t0 = time.perf_counter()
    try:
        hits = retriever.collection.search(q.index, target, q.k, q.filter, q.params, vector, q.item, q.mode, q.fusion)
    except Exception as exc:  # noqa: BLE001 - this query's own error
        return exc if isinstance(exc, SimlookupError) else SimlookupError(f"search failed ({exc!r})")
    ms = (time.perf_counter() - t0) * 1e3
    timings = {"search_ms": ms, "batch": float(size)}
    if encode_ms is not None:
        timings["encode_ms"] = encode_ms
    notes = retriever.warnings(q.index, target, q.params)
    if not len(query_terms(q.item)[0]):
        notes.append("the query has no keyword tokens (letters or digits): the keyword leg found nothing")
    return SearchResult(q.label(), q.index, (encode_ms or 0.0) + ms, hits, target, timings, notes, q.mode)


def _encode(
    retriever: Retriever, kind: QueryKind, target: str, queries: list[Query], idx: list[int]
) -> dict[int, np.ndarray | SimlookupError]:
    """Encode the queries of one vector space in one call; on a failure, one by one so each error is its own."""
    try:
        space = retriever.manifest.vectors.get(target)
        if space is None:
            raise InvalidInputError(
                f"collection {retriever.name!r} has no {target!r} vectors (it has {sorted(retriever.manifest.vectors)})"
            )
        fn = _encode_fn(retriever, space, kind)
    except SimlookupError as exc:
        return dict.fromkeys(idx, exc)
    items = [q.item for q in queries]
    if kind == "text":
        bad = [i for i, t in zip(idx, items, strict=True) if not isinstance(t, str) or not t.strip()]
        if bad:
            good = [(i, t) for i, t in zip(idx, items, strict=True) if i not in bad]
            empty = InvalidInputError("the query text is empty")
            res: dict[int, np.ndarray | SimlookupError] = dict.fromkeys(bad, empty)
            if good:
                res.update(_encode_items(fn, kind, [i for i, _ in good], [t for _, t in good]))
            return res
    return _encode_items(fn, kind, idx, items)


EncodeFn = Callable[[list[Any]], np.ndarray]


def _encode_fn(retriever: Retriever, space: VectorSpace, kind: QueryKind) -> EncodeFn:
    """The space's encoder, checked: ``encode_images`` for image queries, else ``encode_queries`` (each row as
    if encoded alone, so a batched answer equals the unbatched one)."""
    if kind == "image":
        return retriever.image_encoder(space).encode_images
    return retriever.matching_encoder(space).encode_queries


def _encode_items(
    fn: EncodeFn, kind: QueryKind, idx: list[int], items: list[Any]
) -> dict[int, np.ndarray | SimlookupError]:
    try:
        return dict(zip(idx, fn(items), strict=True))
    except Exception as exc:  # noqa: BLE001 - attributed to the query that caused it below
        if len(items) == 1:
            return {idx[0]: _as_error(kind, exc)}
    res: dict[int, np.ndarray | SimlookupError] = {}
    for i, item in zip(idx, items, strict=True):
        try:
            res[i] = fn([item])[0]
        except Exception as exc:  # noqa: BLE001 - this query's own error
            res[i] = _as_error(kind, exc)
    return res


def _as_error(kind: QueryKind, exc: Exception) -> SimlookupError:
    """A project error for one query: a bad image is the caller's error, anything else stays an internal one."""
    if isinstance(exc, SimlookupError):
        return exc
    cls = InvalidInputError if kind == "image" else SimlookupError
    return cls(f"cannot encode the {kind} query ({type(exc).__name__}: {exc})")
