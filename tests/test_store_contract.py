"""One contract, run over every store: the six FAISS kinds, Qdrant Edge and qdrant-client local mode."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.datasets import Dataset
from retrieval.errors import DimensionMismatchError, InvalidInputError, StoreClosedError, StoreLockedError
from retrieval.filters import Filter
from retrieval.metric import Metric, exact_scores, top_k
from retrieval.settings import QdrantSettings, SearchLimits, Settings
from retrieval.stores import Hit, SearchParams, VectorStore, open_store
from tests.conftest import recall_at_k

BACKENDS = [
    "flat",
    "ivf",
    "ivfpq",
    "hnsw",
    "ivf_sq8",
    "hnsw_sq8",
    "edge",
    "local",
    pytest.param("server", marks=pytest.mark.qdrant_server),  # skips unless a real server is reachable
]
GROUPS = ["red", "green", "blue"]


def payload(i: int) -> dict:
    return {"group": GROUPS[i % 3], "rank": i, "even": i % 2 == 0}


def make_settings(tmp: Path, backend: str, server: object = None) -> Settings:
    # a low full-scan threshold makes Qdrant answer through its HNSW graph even on this small set
    if backend == "server":
        q = QdrantSettings(mode="server", url=server.url, api_key=server.api_key, full_scan_threshold_kb=10)  # type: ignore[attr-defined]
    else:
        q = QdrantSettings(mode="local" if backend == "local" else "edge", full_scan_threshold_kb=10)
    return Settings(data_dir=tmp / "data", qdrant=q)


def index_of(backend: str) -> str:
    return "qdrant" if backend in ("edge", "local", "server") else backend


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def opener(tmp_path: Path, backend: str, data: Dataset, request: pytest.FixtureRequest) -> Callable[..., VectorStore]:
    server = request.getfixturevalue("qdrant_server") if backend == "server" else None
    s = make_settings(tmp_path, backend, server)
    name = f"contract-{uuid.uuid4().hex[:8]}" if server else "contract"

    def _open(**kw: object) -> VectorStore:
        return open_store(s, name, index_of(backend), dim=data.dim, payload_indexes={"group": "keyword"}, **kw)

    if server is not None:
        request.addfinalizer(lambda: _drop_collection(s, name))
    return _open


def _drop_collection(s: Settings, name: str) -> None:
    from retrieval.stores.qdrant_client_store import make_client

    client = make_client(s.qdrant, s.data_dir)
    try:
        if client.collection_exists(name):
            client.delete_collection(name)
    finally:
        client.close()


@pytest.fixture
def loaded(opener: Callable[..., VectorStore], data: Dataset) -> VectorStore:
    st = opener()
    ids = data.point_ids()
    st.upsert(ids, data.xb, [payload(i) for i in range(len(ids))])
    st.build()
    yield st
    st.close()


def exact_ids(data: Dataset, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[list[str]]:
    xb = data.xb if mask is None else data.xb[mask]
    ids = np.array(data.point_ids())
    ids = ids if mask is None else ids[mask]
    idx, _ = top_k(exact_scores(queries, xb, Metric.COSINE), k, Metric.COSINE)
    return [[str(ids[j]) for j in row] for row in idx]


def test_count_and_self_hit(loaded: VectorStore, data: Dataset) -> None:
    assert loaded.count() == len(data.xb)
    res = loaded.search(data.xb[:20], k=1)
    assert [r[0].id for r in res] == data.point_ids()[:20]
    assert res[0][0].payload == payload(0)


def test_recall_at_default_params(loaded: VectorStore, data: Dataset) -> None:
    got = [[h.id for h in r] for r in loaded.search(data.xq, k=10)]
    assert recall_at_k(got, exact_ids(data, data.xq, 10), 10) >= 0.9


def test_exact_mode_is_exact(loaded: VectorStore, data: Dataset) -> None:
    got = [[h.id for h in r] for r in loaded.search(data.xq[:10], k=10, params=SearchParams(exact=True))]
    assert recall_at_k(got, exact_ids(data, data.xq[:10], 10), 10) == 1.0


def test_filter_returns_k_matching(loaded: VectorStore, data: Dataset) -> None:
    res = loaded.search(data.xq[:5], k=10, filter={"group": "green"})
    for hits in res:
        assert len(hits) == 10
        assert all(h.payload["group"] == "green" for h in hits)
    mask = np.array([payload(i)["group"] == "green" for i in range(len(data.xb))])
    truth = exact_ids(data, data.xq[:5], 10, mask)
    assert recall_at_k([[h.id for h in r] for r in res], truth, 10) >= 0.8


def test_selective_filter_still_returns_k(loaded: VectorStore, data: Dataset) -> None:
    # 12 points match: a post-filter over the top candidates would return fewer than k
    hits = loaded.search(data.xq[0], k=10, filter={"rank": {"lt": 12}})[0]
    assert len(hits) == 10
    assert all(h.payload["rank"] < 12 for h in hits)


def test_any_of_and_range(loaded: VectorStore, data: Dataset) -> None:
    hits = loaded.search(data.xq[1], k=7, filter={"group": ["red", "blue"], "rank": {"gte": 100, "lt": 2000}})[0]
    assert len(hits) == 7
    assert all(h.payload["group"] in ("red", "blue") and 100 <= h.payload["rank"] < 2000 for h in hits)


def test_filter_matching_nothing(loaded: VectorStore, data: Dataset) -> None:
    assert loaded.search(data.xq[0], k=5, filter={"group": "purple"}) == [[]]


def test_delete(loaded: VectorStore, data: Dataset) -> None:
    ids = data.point_ids()
    assert loaded.delete(ids[:10] + ["nope"]) == 10
    assert loaded.count() == len(ids) - 10
    res = loaded.search(data.xb[:10], k=5)
    returned = {h.id for r in res for h in r}
    assert not returned & set(ids[:10])
    assert loaded.delete(ids[:10]) == 0


def test_update_in_place(loaded: VectorStore, data: Dataset) -> None:
    ids = data.point_ids()
    target = data.xb[500]
    loaded.upsert([ids[0]], target[None, :], [{"group": "updated", "rank": -1, "even": True}])
    assert loaded.count() == len(ids)
    hits = loaded.search(target, k=2, params=SearchParams(exact=True))[0]
    assert {h.id for h in hits} == {ids[0], ids[500]}
    got = loaded.fetch([ids[0]])[ids[0]]
    assert got[1]["group"] == "updated"
    if got[0] is not None:
        np.testing.assert_allclose(got[0], target, atol=1e-5)


def test_idempotent_upsert(loaded: VectorStore, data: Dataset) -> None:
    ids = data.point_ids()
    loaded.upsert(ids[:100], data.xb[:100], [payload(i) for i in range(100)])
    assert loaded.count() == len(ids)
    assert loaded.ids() == set(ids)


def test_persist_and_reopen(opener: Callable[..., VectorStore], data: Dataset) -> None:
    st = opener()
    ids = data.point_ids()
    st.upsert(ids, data.xb, [payload(i) for i in range(len(ids))])
    st.build()
    before = [[h.id for h in r] for r in st.search(data.xq[:5], k=5)]
    st.delete(ids[:3])
    st.close()
    with pytest.raises(StoreClosedError):
        st.count()
    again = opener(create=False)
    try:
        assert again.count() == len(ids) - 3
        after = [[h.id for h in r] for r in again.search(data.xq[:5], k=5)]
        expected = [[i for i in row if i not in ids[:3]] for row in before]
        assert recall_at_k([a[: len(e)] for a, e in zip(after, expected, strict=True)], expected, 1) >= 0.8
    finally:
        again.close()


def test_bad_input_leaves_store_unchanged(loaded: VectorStore, data: Dataset) -> None:
    n = loaded.count()
    with pytest.raises(DimensionMismatchError):
        loaded.upsert(["x"], np.ones((1, data.dim + 1), np.float32))
    bad = data.xb[:2].copy()
    bad[1, 3] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        loaded.upsert(["x", "y"], bad)
    inf = data.xb[:1].copy()
    inf[0, 0] = np.inf
    with pytest.raises(InvalidInputError):
        loaded.search(inf, k=3)
    with pytest.raises(DimensionMismatchError):
        loaded.search(np.ones(data.dim - 1, np.float32), k=3)
    with pytest.raises(InvalidInputError):
        loaded.upsert(["a", "a"], data.xb[:2])
    with pytest.raises(InvalidInputError):
        loaded.search(data.xq[0], k=0)
    one = data.xq[:1].copy()  # the one-query fast path checks the same things
    one[0, 5] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        loaded.search(one, k=3)
    if loaded.metric.value == "cosine":
        with pytest.raises(InvalidInputError, match="zero"):
            loaded.search(np.zeros((1, data.dim), np.float32), k=3)
    for pl, message in (
        ({"v": math.nan}, "finite"),
        ({"v": {"w": [1.0, math.inf]}}, "JSON"),
        ({"v": {1, 2}}, "JSON"),
        (["not", "a", "dict"], "dict"),
        ({1: "a"}, "keys are strings"),
        ({"v": {1: "a", "b": 2}}, "JSON"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            loaded.upsert(["x", "y"], data.xb[:2], [{"ok": 1}, pl])  # type: ignore[list-item]
    assert loaded.count() == n


def test_query_scale_and_payload_copies(loaded: VectorStore, data: Dataset) -> None:
    """A scaled single query answers like the unit one (cosine); stored payloads are the store's own copies."""
    q = data.xq[:1]
    base = loaded.search(q, k=5, params=SearchParams(exact=True))[0]
    if loaded.metric.value == "cosine":
        for factor in (7.5, 1e20, 1e-30):  # squares of 1e20 overflow float32, of 1e-30 underflow it
            scaled = loaded.search(
                np.ascontiguousarray(q * factor, dtype=np.float32), k=5, params=SearchParams(exact=True)
            )
            assert [h.id for h in scaled[0]] == [h.id for h in base], factor
            assert np.allclose([h.score for h in scaled[0]], [h.score for h in base], atol=1e-5), factor
    mine = [{"tag": "orig", "n": 1}, {"tag": "orig", "n": 2}]
    loaded.upsert(["copy-a", "copy-b"], data.xb[:2], mine)
    mine[0]["tag"] = "mutated"
    got = loaded.fetch(["copy-a"])["copy-a"][1]
    assert got == {"tag": "orig", "n": 1}
    hit = loaded.search(data.xb[:1], k=1, filter={"tag": "orig", "n": 1})[0][0]
    hit.payload["tag"] = "changed by the caller"
    assert loaded.fetch(["copy-a"])["copy-a"][1]["tag"] == "orig"
    # nested values too: a caller editing a hit's list or object changes nothing stored, and delete still works
    loaded.upsert(["nest"], data.xb[5:6], [{"tags": ["a"], "meta": {"k": 1}}])
    for found in (loaded.search(data.xb[5:6], k=1, filter={"tags": "a"})[0][0], loaded.fetch(["nest"])["nest"]):
        pl = found.payload if isinstance(found, Hit) else found[1]
        pl["tags"].append("b")
        pl["meta"]["k"] = 2
    assert loaded.fetch(["nest"])["nest"][1] == {"tags": ["a"], "meta": {"k": 1}}
    assert [h.id for h in loaded.search(data.xb[5:6], k=3, filter={"tags": "b"})[0]] == []
    assert loaded.search(data.xb[5:6], k=1, filter={"meta.k": 1})[0][0].payload == {"tags": ["a"], "meta": {"k": 1}}
    assert loaded.delete(["nest"]) == 1 and "nest" not in loaded.ids()


def test_unknown_filter_field_matches_nothing(opener: Callable[..., VectorStore], data: Dataset) -> None:
    st = opener()
    try:
        assert st.search(data.xq[0], k=3, filter={"colour": "red"}) == [[]]  # an empty store
        st.upsert(data.point_ids()[:50], data.xb[:50], [payload(i) for i in range(50)])
        assert st.search(data.xq[0], k=3, filter={"colour": "red"}) == [[]]
        assert len(st.search(data.xq[0], k=3, filter={"group": "red"})[0]) == 3
    finally:
        st.close()


ID_PAYLOADS: list[dict] = [
    {"_id": "u0", "n": 0},
    {"_id": {"x": 1}},
    {"_id~": "t"},  # the stored form of a user's "_id" on Qdrant: must stay the user's own key
    {"_id": ["u0", "u3"], "_id.x": 2},
    {"n": 1, "meta": {"_id": "inner"}},
]
ID_FILTERS: list[tuple[dict, set[int]]] = [
    ({"_id": "u0"}, {0, 3}),
    ({"_id": ["u3", "zz"]}, {3}),
    ({"_id.x": 1}, {1}),
    ({"_id.x": 2}, {3}),  # the literal key "_id.x" wins
    ({"_id": {"$exists": True}}, {0, 1, 3}),
    ({"_id": None}, {2, 4}),
    ({"_id~": "t"}, {2}),
    ({"meta._id": "inner"}, {4}),
    ({"$or": [{"_id": "u0"}, {"n": 1}]}, {0, 3, 4}),
]


def test_a_payload_key_named_id_is_stored_returned_and_filtered(loaded: VectorStore, data: Dataset) -> None:
    """Issue 21 item 14: Qdrant refused a payload key "_id" (its own id key), FAISS took it; LangChain's Qdrant
    store puts one in every Document. Every backend now stores, returns and filters it like any other key."""
    all_ids = data.point_ids()
    ids = all_ids[: len(ID_PAYLOADS)]
    exact = SearchParams(exact=True)
    assert loaded.upsert(ids, data.xb[: len(ids)], ID_PAYLOADS) == len(ids)
    loaded.build()
    assert {i: pl for i, (_, pl) in loaded.fetch(ids).items()} == dict(zip(ids, ID_PAYLOADS, strict=True))
    hits = loaded.search(data.xb[0], k=len(all_ids), params=exact)[0]
    assert {h.id: h.payload for h in hits if h.id in ids} == dict(zip(ids, ID_PAYLOADS, strict=True))
    assert loaded.ids() == set(all_ids)
    payloads = {pid: ID_PAYLOADS[i] if i < len(ids) else payload(i) for i, pid in enumerate(all_ids)}
    for spec, expected in ID_FILTERS:
        flt = Filter.from_dict(spec)
        want = {pid for pid, pl in payloads.items() if flt.matches(pl)}
        assert want & set(ids) == {ids[i] for i in expected}, spec  # the rule as documented
        assert {h.id for h in loaded.search(data.xb[0], k=len(all_ids), filter=flt, params=exact)[0]} == want, spec
    assert loaded.upsert(ids[:1], data.xb[:1], [{"_id": "again"}]) == 1  # re-added with its _id
    assert loaded.fetch(ids[:1])[ids[0]][1] == {"_id": "again"} and loaded.count() == len(all_ids)


def test_empty_upsert_returns_zero(opener: Callable[..., VectorStore], data: Dataset) -> None:
    st = opener()
    try:
        assert st.upsert([], [], []) == 0
        assert st.upsert([], np.zeros((0, data.dim), np.float32)) == 0
        assert st.count() == 0
    finally:
        st.close()


def test_upsert_returns_number_of_points_given(opener: Callable[..., VectorStore], data: Dataset) -> None:
    """len(ids), whether the points were inserted, replaced or left unchanged."""
    st = opener()
    ids = data.point_ids()[:20]
    try:
        assert st.upsert(ids, data.xb[:20], [payload(i) for i in range(20)]) == 20  # inserted
        assert st.upsert(ids, data.xb[:20], [payload(i) for i in range(20)]) == 20  # unchanged
        assert st.upsert(ids[:5], data.xb[20:25], [payload(i) for i in range(5)]) == 5  # replaced
        assert st.count() == 20
    finally:
        st.close()


def test_k_beyond_the_collection_and_caps(loaded: VectorStore, data: Dataset) -> None:
    n = len(data.xb)
    max_k = SearchLimits().max_k  # a store opened without settings has the settings' default caps
    assert len(loaded.search(data.xq[0], k=max_k)[0]) == n  # at most the collection, nothing sized from k
    assert len(loaded.search(data.xq[0], k=max_k, filter={"group": "red"})[0]) == n // 3
    with pytest.raises(InvalidInputError, match=f"above the limit of {max_k} hits \\(SIMLOOKUP_LIMITS__MAX_K\\)"):
        loaded.search(data.xq[0], k=max_k + 1)
    with pytest.raises(InvalidInputError, match="SIMLOOKUP_LIMITS__MAX_K"):
        loaded.search(data.xq[0], k=2**31)
    for name, var in (("hnsw_ef", "MAX_EF"), ("nprobe", "MAX_NPROBE"), ("rerank", "MAX_RERANK")):
        with pytest.raises(InvalidInputError, match=f"=1000000000 is above the limit of .*SIMLOOKUP_LIMITS__{var}"):
            loaded.search(data.xq[0], k=1, params=SearchParams(**{name: 10**9}))
    lim = SearchLimits()
    big = usable(loaded, hnsw_ef=lim.max_ef, nprobe=lim.max_nprobe, rerank=lim.max_rerank)  # at the caps: answered
    assert len(loaded.search(data.xq[0], k=5, params=big)[0]) == 5


def usable(store: VectorStore, **params: Any) -> SearchParams:
    """The parameters among these that the store declares it uses (all of them where it declares none)."""
    accepts = store.query_params()
    return SearchParams(**{k: v for k, v in params.items() if accepts is None or k in accepts})


def test_a_query_parameter_the_index_does_not_use_is_refused(loaded: VectorStore, data: Dataset) -> None:
    """Every engine declares its query parameters; one it would silently ignore is an error naming them."""
    accepts = loaded.query_params()
    assert accepts is not None and "exact" in accepts
    for name in sorted({"nprobe", "hnsw_ef", "rerank"} - accepts):
        with pytest.raises(InvalidInputError, match=f"does not use {name}: the query parameters it accepts are"):
            loaded.search(data.xq[0], k=3, params=SearchParams(**{name: 5}))
    for name in sorted({"nprobe", "hnsw_ef", "rerank"} & accepts):
        assert len(loaded.search(data.xq[0], k=3, params=SearchParams(**{name: 5}))[0]) == 3
    assert len(loaded.search(data.xq[0], k=3, params=SearchParams(exact=True, rerank=1))[0]) == 3  # 1: off


def test_open_store_applies_the_settings_caps(
    tmp_path: Path, backend: str, data: Dataset, request: pytest.FixtureRequest
) -> None:
    """One table of caps: a store opened through open_store(settings) refuses what the settings refuse, and
    allows what they allow (above the defaults too), each refusal naming its variable."""
    server = request.getfixturevalue("qdrant_server") if backend == "server" else None
    limits = SearchLimits(max_k=5, max_ef=200_000, max_nprobe=3, max_rerank=2)
    settings = make_settings(tmp_path, backend, server).model_copy(update={"limits": limits})
    name = f"caps-{uuid.uuid4().hex[:8]}"
    if server is not None:
        request.addfinalizer(lambda: _drop_collection(settings, name))
    st = open_store(settings, name, index_of(backend), dim=data.dim, metric=Metric.COSINE)
    try:
        st.upsert(data.point_ids()[:300], data.xb[:300], [payload(i) for i in range(300)])
        st.build()
        assert len(st.search(data.xq[0], k=5, params=usable(st, hnsw_ef=150_000))[0]) == 5
        with pytest.raises(InvalidInputError, match=r"k=6 is above the limit of 5 hits \(SIMLOOKUP_LIMITS__MAX_K\)"):
            st.search(data.xq[0], k=6)
        with pytest.raises(InvalidInputError, match=r"nprobe=4 is above the limit of 3 \(SIMLOOKUP_LIMITS__MAX_NPROBE"):
            st.search(data.xq[0], k=1, params=SearchParams(nprobe=4))
        with pytest.raises(InvalidInputError, match=r"rerank factor=3 is above the limit of 2 \(SIMLOOKUP_LIMITS__"):
            st.search(data.xq[0], k=1, params=SearchParams(rerank=3))
    finally:
        st.close()


def test_second_read_only_open_alongside(
    loaded: VectorStore, opener: Callable[..., VectorStore], data: Dataset
) -> None:
    """A reader in the same process (the server beside an ingest) opens and searches while the writer is open."""
    ro = opener(create=False, read_only=True)
    try:
        assert ro.count() == len(data.xb)
        assert [h.id for h in ro.search(data.xb[3], k=1)[0]] == [data.point_ids()[3]]
        loaded.upsert(["late"], data.xb[:1])
        assert loaded.count() == len(data.xb) + 1
    finally:
        ro.close()
    assert loaded.count() == len(data.xb) + 1  # closing the reader leaves the writer working


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_read_only_open_searches_and_changes_no_file(
    opener: Callable[..., VectorStore], data: Dataset, tmp_path: Path
) -> None:
    """read_only is part of the contract: a reader searches, fetches and counts, refuses writes, and leaves every
    file under the data folder as it found it (an Edge open rewrote edge_config.json)."""
    ids = data.point_ids()
    st = opener()
    st.upsert(ids, data.xb, [payload(i) for i in range(len(ids))])
    st.build()
    st.close()
    before = file_hashes(tmp_path / "data")
    ro = opener(create=False, read_only=True)
    try:
        assert ro.read_only
        assert ro.count() == len(ids)
        assert [r[0].id for r in ro.search(data.xb[:5], k=1)] == ids[:5]
        assert len(ro.search(data.xq[0], k=10, filter={"rank": {"lt": 12}})[0]) == 10
        assert ro.fetch(ids[1:2])[ids[1]][1] == payload(1)
        with pytest.raises(StoreLockedError):
            ro.upsert(["new"], data.xb[:1])
        with pytest.raises(StoreLockedError):
            ro.delete(ids[:1])
        with pytest.raises(StoreLockedError):
            ro.build()
        assert ro.count() == len(ids)
    finally:
        ro.close()
    assert file_hashes(tmp_path / "data") == before
    again = opener(create=False)  # a writer opens after the reader as before it
    try:
        assert again.count() == len(ids)
    finally:
        again.close()


def test_search_without_payload_returns_the_same_ids_and_scores(loaded: VectorStore, data: Dataset) -> None:
    """with_payload=False (as Qdrant's option): the same hits, each with an empty payload, filtered or not."""
    for flt in (None, {"group": "green"}, {"rank": {"lt": 12}}):
        full = loaded.search(data.xq[:5], k=10, filter=flt)
        bare = loaded.search(data.xq[:5], k=10, filter=flt, with_payload=False)
        assert [[h.id for h in r] for r in bare] == [[h.id for h in r] for r in full], flt
        for b, f in zip(bare, full, strict=True):
            assert [h.score for h in b] == pytest.approx([h.score for h in f], abs=1e-6), flt
        assert all(h.payload == {} for r in bare for h in r), flt
        assert all(len(r) == 10 for r in bare), flt
