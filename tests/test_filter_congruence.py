"""Every engine answers a filter exactly as the plain-Python reference (``Filter.matches``) does.

One small store per engine (the four FAISS kinds, Qdrant Edge, qdrant-client local mode, and a real server
where one is reachable), reused across examples: each example replaces the payloads of the same points and
compares the id set of an exact filtered search (k = every point) with the reference evaluation.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval.errors import FilterError
from retrieval.filters import MAX_SAFE_INT, Filter
from retrieval.settings import QdrantSettings, Settings
from retrieval.stores import SearchParams, VectorStore, open_store
from simlookup.filter_args import parse_filter_args
from tests.filter_strategies import filters, payloads

ENGINES = [
    "flat",
    "ivf",
    "ivfpq",
    "hnsw",
    "edge",
    "local",
    pytest.param("server", marks=pytest.mark.qdrant_server),  # skips unless a real server is reachable
]
N = 40
DIM = 8
IDS = [f"p{i}" for i in range(N)]
VECS = np.random.default_rng(3).normal(size=(N, DIM)).astype(np.float32)
EXACT = SearchParams(exact=True)
SMALL_FAISS = {"ivf": {"nlist": 2}, "ivfpq": {"nlist": 2, "pq_m": 2, "pq_nbits": 4}}


def open_engine(engine: str, root: Path, server: Any = None, name: str = "filters") -> VectorStore:
    """A store of this engine under root (a fresh collection on the server)."""
    if engine == "server":
        q = QdrantSettings(mode="server", url=server.url, api_key=server.api_key)
        name = f"filters-{uuid.uuid4().hex[:8]}"
    else:
        q = QdrantSettings(mode="local" if engine == "local" else "edge")
    index = "qdrant" if engine in ("edge", "local", "server") else engine
    st_ = open_store(Settings(data_dir=root, qdrant=q), name, index, dim=DIM, **SMALL_FAISS.get(engine, {}))
    return st_


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VectorStore]:
    server = request.getfixturevalue("qdrant_server") if request.param == "server" else None
    st_ = open_engine(request.param, tmp_path_factory.mktemp(request.param), server)
    st_.upsert(IDS, VECS, [{} for _ in IDS])
    st_.build()
    yield st_
    if request.param == "server":
        st_.client.delete_collection(st_.name)  # type: ignore[attr-defined]
    st_.close()


def load(store: VectorStore, pls: list[dict[str, Any]]) -> None:
    store.upsert(IDS, VECS, pls)
    if store.backend in ("qdrant-edge", "qdrant-server"):
        # payload indexes inferred from these payloads, on top of those earlier examples left (of other types):
        # an index must never change an answer
        store.build()


def found(store: VectorStore, flt: Filter | dict[str, Any]) -> set[str]:
    """Ids an exact filtered search returns when k covers every point."""
    return {h.id for h in store.search(VECS[0], k=N, filter=flt, params=EXACT)[0]}


def reference(pls: list[dict[str, Any]], flt: Filter) -> set[str]:
    return {IDS[i] for i, pl in enumerate(pls) if flt.matches(pl)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(payloads, min_size=N, max_size=N), st.lists(filters, min_size=1, max_size=6))
def test_random_filters_equal_the_reference(
    engine: VectorStore, pls: list[dict[str, Any]], specs: list[dict[str, Any]]
) -> None:
    load(engine, pls)
    for spec in specs:
        flt = Filter.from_dict(spec)
        assert found(engine, flt) == reference(pls, flt), spec


# ------------------------------------------------------------------------- each rule, on every engine
RULE_PAYLOADS: list[dict[str, Any]] = [
    {"tags": ["x", "y"], "flag": True, "x": 2, "year": 2012, "genre": "main-news"},  # p0
    {"tags": "x", "flag": 1, "x": 2.0, "year": 2012.0, "genre": "main-forums"},  # p1
    {"flag": False, "x": "2", "year": 2013, "genre": 2012},  # p2
    {"flag": None, "x": None, "a": {"b": 1}, "Header 1": "Intro"},  # p3
    {"x": [], "a": [{"b": 2}, {"b": 1}], "a.b": 7},  # p4
    {"x": [1, None], "a.b": [], "a": {"b": 3}, 'q"k': "v"},  # p5
    {},  # p6
]
N_RULES = len(RULE_PAYLOADS)
RULES: list[tuple[dict[str, Any], set[int]]] = [
    ({"tags": "x"}, {0, 1}),  # any element of an array
    ({"flag": True}, {0}),  # a bool never equals a number
    ({"flag": 1}, {1}),
    ({"flag": False}, {2}),
    ({"x": 2}, {0, 1}),  # 2 equals 2.0, not "2"
    ({"x": 2.0}, {0, 1}),
    ({"x": "2"}, {2}),
    ({"x": {"$gte": 1.5}}, {0, 1}),  # numbers only
    ({"x": {"$ne": 2}}, {2, 3, 4, 5, 6}),  # negation matches points lacking the field
    ({"x": {"$nin": [2, "2"]}}, {3, 4, 5, 6}),
    ({"x": {"$not": {"$gt": 1}}}, {2, 3, 4, 5, 6}),
    ({"x": None}, {3, 4, 5, 6}),  # null, [], holding null, missing
    ({"x": {"$exists": True}}, {0, 1, 2, 5}),
    ({"x": {"$exists": False}}, {3, 4, 6}),
    ({"a.b": 1}, {3}),  # nested; the literal "a.b" of p4 wins over its array of objects
    ({"a.b": 3}, {5}),  # a literal [] does not win
    ({"a.b": 7}, {4}),
    ({"a.b": {"$exists": True}}, {3, 4, 5}),
    ({"a.b": None}, {0, 1, 2, 6}),
    ({"Header 1": "Intro"}, {3}),  # a key with a space
    ({'q"k': "v"}, {5}),  # a key Qdrant cannot name: evaluated in Python, still exact
    ({"nope": 1}, set()),  # a field no point has matches nothing ...
    ({"nope": {"$gte": 0}}, set()),
    ({"nope": ["x", 1]}, set()),
    ({"nope": {"$exists": True}}, set()),
    ({"nope": {"$ne": None}}, set()),
    ({"nope": {"$ne": 1}}, set(range(N_RULES))),  # ... everything under negation ...
    ({"nope": {"$nin": ["x", 1]}}, set(range(N_RULES))),
    ({"nope": None}, set(range(N_RULES))),  # ... and through null and $exists: false (issue 21 item 13)
    ({"nope": {"$exists": False}}, set(range(N_RULES))),
    ({"_id": None}, set(range(N_RULES))),  # a user field like any other (Qdrant's own id key stays hidden)
    ({"_id": {"$exists": True}}, set()),
    ({"$or": [{"genre": "main-news"}, {"tags": {"$in": ["y"]}}, {"x": None}]}, {0, 3, 4, 5, 6}),
    ({"$nor": [{"flag": True}, {"flag": 1}]}, {2, 3, 4, 5, 6}),
]


@pytest.fixture
def ruled(engine: VectorStore) -> VectorStore:
    engine.delete(IDS)
    engine.upsert(IDS[:N_RULES], VECS[:N_RULES], RULE_PAYLOADS)
    return engine


@pytest.mark.parametrize(("spec", "expected"), RULES, ids=[str(r[0]) for r in RULES])
def test_rule_on_every_engine(ruled: VectorStore, spec: dict[str, Any], expected: set[int]) -> None:
    want = {IDS[i] for i in expected}
    assert reference(RULE_PAYLOADS, Filter.from_dict(spec)) == want  # the rule as documented
    assert found(ruled, spec) == want


# a literal dotted key wins over the nested path with any value but [] (null included): issue 21 item 13
DOTTED_PAYLOADS: list[dict[str, Any]] = [
    {"a.b": None, "a": {"b": 1}},  # q0: the literal null wins
    {"a.b": [], "a": {"b": 1}},  # q1: a literal [] lets the nested path answer
    {"a": {"b": 1}},  # q2: no literal key
    {"a.b": [1], "a": {"b": 2}},  # q3: the literal array wins
]
DOTTED_RULES: list[tuple[dict[str, Any], set[int]]] = [
    ({"a.b": 1}, {1, 2, 3}),
    ({"a.b": 2}, set()),
    ({"a.b": None}, {0}),
    ({"a.b": {"$exists": True}}, {1, 2, 3}),
    ({"a.b": {"$exists": False}}, {0}),
    ({"a.b": {"$ne": 1}}, {0}),
]


def test_literal_dotted_key_rules_on_every_engine(engine: VectorStore) -> None:
    engine.delete(IDS)
    n = len(DOTTED_PAYLOADS)
    engine.upsert(IDS[:n], VECS[:n], DOTTED_PAYLOADS)
    for spec, expected in DOTTED_RULES:
        want = {IDS[i] for i in expected}
        assert reference(DOTTED_PAYLOADS, Filter.from_dict(spec)) == want, spec  # the rule as documented
        assert found(engine, spec) == want, spec


# numbers beyond ±(2**53 - 1) in a filter are refused; within, every engine is exact on big stored integers
BIG_PAYLOADS: list[dict[str, Any]] = [
    {"v": 2**63 - 1},  # b0
    {"v": 2**53 + 1},  # b1
    {"v": 2**53},  # b2
    {"v": -(2**63)},  # b3
    {"v": MAX_SAFE_INT},  # b4
    {"v": [-(2**53) - 1, "x"]},  # b5
    {"v": float(2**53)},  # b6
]
BIG_RULES: list[tuple[dict[str, Any], set[int]]] = [
    ({"v": MAX_SAFE_INT}, {4}),
    ({"v": {"$gt": MAX_SAFE_INT}}, {0, 1, 2, 6}),
    ({"v": {"$gte": MAX_SAFE_INT}}, {0, 1, 2, 4, 6}),
    ({"v": {"$lt": -MAX_SAFE_INT}}, {3, 5}),
    ({"v": {"$ne": MAX_SAFE_INT}}, {0, 1, 2, 3, 5, 6}),
    ({"v": {"$gt": 0, "$lt": MAX_SAFE_INT}}, set()),
    ({"v": [MAX_SAFE_INT, -MAX_SAFE_INT]}, {4}),
]


def test_big_integers_on_every_engine(engine: VectorStore) -> None:
    """Issue 21 item 2: local mode compared 2**53 + 1 exactly and Edge/FAISS as a double (three filters, three
    disagreements); filter numbers beyond ±(2**53 - 1) are now refused everywhere, and within it all agree."""
    engine.delete(IDS)
    n = len(BIG_PAYLOADS)
    engine.upsert(IDS[:n], VECS[:n], BIG_PAYLOADS)
    assert {i: pl for i, (_, pl) in engine.fetch(IDS[:n]).items()} == dict(zip(IDS[:n], BIG_PAYLOADS, strict=True))
    for spec, expected in BIG_RULES:
        want = {IDS[i] for i in expected}
        assert reference(BIG_PAYLOADS, Filter.from_dict(spec)) == want, spec
        assert found(engine, spec) == want, spec
    for spec in ({"v": 2**63 - 1}, {"v": 2**53}, {"v": {"$gt": 2**53}}, {"v": {"$in": [1, -(2**53)]}}, {"v": 1e300}):
        with pytest.raises(FilterError, match=r"beyond ±9007199254740991 \(2\*\*53 - 1\)"):
            engine.search(VECS[0], k=N, filter=spec, params=EXACT)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["flag=true"], {0}),  # issue 11 item 7: 0 hits on Qdrant, 150 on FAISS before
        (["year=2012.0"], {0, 1}),  # raised a raw TypeError on Qdrant Edge
        (["genre=main-news,2012"], {0, 2}),  # mixed-type any-of: raised a raw TypeError
        (["year>=2012", "year<2013"], {0, 1}),
    ],
)
def test_cli_filters_agree_on_every_engine(ruled: VectorStore, args: list[str], expected: set[int]) -> None:
    assert found(ruled, parse_filter_args(args)) == {IDS[i] for i in expected}


def test_two_bounds_on_one_side_after_build(ruled: VectorStore) -> None:
    """The tighter bound of a side wins on every engine, also once Qdrant has its numeric payload index (which
    honours one bound per side: `$lte 2012` with `$lt 2013` answered like `$lt 2013` before)."""
    ruled.build()
    cases = [
        ({"year": {"$lte": 2012, "$lt": 2013}}, {0, 1}),
        ({"year": {"$lt": 2012.5, "$lte": 2013}}, {0, 1}),
        ({"year": {"$gte": 2013, "$gt": 2011}}, {2}),
        ({"year": {"$gt": 2012, "$gte": 2012}}, {2}),
        ({"year": {"$gt": 2011, "$gte": 2012, "$lt": 2014, "$lte": 2012}}, {0, 1}),
    ]
    for spec, expected in cases:
        want = {IDS[i] for i in expected}
        assert reference(RULE_PAYLOADS, Filter.from_dict(spec)) == want, spec
        assert found(ruled, spec) == want, spec


def test_nan_bound_is_a_clear_error(ruled: VectorStore) -> None:
    with pytest.raises(FilterError, match="finite number"):
        ruled.search(VECS[0], k=3, filter=parse_filter_args(["year>=nan"]))
    with pytest.raises(FilterError, match="finite number"):
        ruled.search(VECS[0], k=3, filter={"year": {"$gte": float("nan")}})


def test_filter_on_an_empty_store(tmp_path: Path) -> None:
    for eng in ("flat", "edge", "local"):
        st_ = open_engine(eng, tmp_path / eng)
        try:
            assert st_.search(VECS[0], k=3, filter={"nope": 1}) == [[]]
            assert st_.search(VECS[0], k=3, filter={"nope": {"$ne": 1}}) == [[]]
        finally:
            st_.close()


def test_doubles_of_at_most_15_significant_digits_round_trip(engine: VectorStore) -> None:
    """The documented number rule: a payload double of at most 15 significant digits and magnitude of at least
    1e-4 comes back equal and equals itself in a filter on every engine (Qdrant Edge 0.9.0 parses longer or
    smaller doubles up to 2 ulp off)."""
    rng = np.random.default_rng(11)
    vals = [float(f"{x:.15g}") for x in rng.uniform(-1e6, 1e6, N // 2)]
    rest = N - len(vals)
    mags = 10.0 ** rng.uniform(-4, 15, rest) * rng.choice([-1.0, 1.0], rest)  # |x| from 1e-4 to 1e15
    vals += [float(f"{x:.15g}") for x in mags]
    load(engine, [{"x": v} for v in vals])
    got = engine.fetch(IDS)
    assert [got[i][1]["x"] for i in IDS] == vals
    for i in (0, 7, N - 1):
        assert found(engine, {"x": vals[i]}) == {IDS[j] for j, v in enumerate(vals) if v == vals[i]}
