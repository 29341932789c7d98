"""Edges every engine must answer alike (the four FAISS kinds, Qdrant Edge, qdrant-client local mode): payload
integers beyond 64 bits, filter keys Qdrant cannot name in a JSON path, vectors beyond float32, and whether a
payload field exists (the missing-field hint). A follow-up adversarial pass of issue 21 found each."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.errors import FilterError, InvalidInputError
from retrieval.filters import Filter, holds_path
from retrieval.stores import VectorStore
from tests.test_filter_congruence import DIM, EXACT, IDS, VECS, found, open_engine

ENGINES = ["flat", "ivf", "ivfpq", "hnsw", "edge", "local"]


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VectorStore]:
    st_ = open_engine(request.param, tmp_path_factory.mktemp(request.param), name="edges")
    st_.upsert(IDS, VECS, [{} for _ in IDS])
    st_.build()
    yield st_
    st_.close()


# ------------------------------------------------------------------------ integers beyond 64 bits
TOO_BIG: list[tuple[dict[str, Any], str]] = [
    ({"v": 2**63}, "'v'"),  # one past int64 (Qdrant Edge keeps it as u64, a server too: engines differ beyond)
    ({"v": 2**64}, "'v'"),  # Qdrant Edge stored 1.8446744073709552e+19, FAISS the integer
    ({"v": -(2**63) - 1}, "'v'"),
    ({"v": 10**30}, "'v'"),
    ({"a": {"n": 2**64}}, "'a.n'"),  # nested
    ({"t": [1, 2**64]}, r"'t\[1\]'"),  # in an array
    ({"a": [{"n": [-(10**40)]}]}, r"'a\[0\]\.n\[0\]'"),
]


@pytest.mark.parametrize(("payload", "where"), TOO_BIG, ids=[str(p) for p, _ in TOO_BIG])
def test_payload_integers_beyond_64_bits_are_refused(engine: VectorStore, payload: dict[str, Any], where: str) -> None:
    n = engine.count()
    with pytest.raises(InvalidInputError, match=rf"payload field {where} .*64-bit.*store it as a string"):
        engine.upsert(["big1", "big2"], VECS[:2], [{"ok": 1}, payload])
    assert engine.count() == n and not engine.fetch(["big1", "big2"])  # nothing written


def test_payload_integers_at_the_64_bit_limits_are_kept(engine: VectorStore) -> None:
    pls: list[dict[str, Any]] = [{"v": 2**63 - 1}, {"v": -(2**63)}, {"v": [2**63 - 1]}, {"v": "1" * 40}]
    ids = [f"lim{i}" for i in range(len(pls))]
    engine.upsert(ids, VECS[: len(pls)], pls)
    try:
        got = engine.fetch(ids)
        assert [got[i][1] for i in ids] == pls
    finally:
        engine.delete(ids)


# ------------------------------------------------------------------- keys Qdrant cannot name in a path
ODD_KEYS = ["\\x", "\\", 'x\\"', "a.b", "a[b", "a]", "a[]", "[0]", 'q"k', "a'b", "é", "", " ", "tab\tkey", "nl\nkey"]


def test_filter_keys_with_json_path_characters_match_on_every_engine(engine: VectorStore) -> None:
    """A backslash key gave a raw ``ValueError: invalid JSON path`` on Qdrant Edge: Qdrant's quoted path key holds
    neither a double quote nor a backslash (no escapes), so such a key is evaluated in Python, exactly."""
    engine.delete(IDS)
    pls = [{k: "A"} for k in ODD_KEYS]
    engine.upsert(IDS[: len(pls)], VECS[: len(pls)], pls)
    try:
        for i, k in enumerate(ODD_KEYS):
            assert found(engine, {k: "A"}) == {IDS[i]}, k
            assert found(engine, {k: {"$ne": "A"}}) == set(IDS[: len(pls)]) - {IDS[i]}, k
            assert found(engine, {"$or": [{k: "A"}, {k: {"$exists": True}}]}) == {IDS[i]}, k
    finally:
        engine.delete(IDS[: len(pls)])
        engine.upsert(IDS, VECS, [{} for _ in IDS])


# ------------------------------------------------------------------------------ vectors beyond float32
@pytest.mark.parametrize("value", [1e39, -1e39, 3.5e38, 1e300])
def test_vectors_beyond_float32_are_refused_without_a_warning(engine: VectorStore, value: float) -> None:
    vec = [value] + [0.0] * (DIM - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in cast" leaked before
        queries: list[Any] = [vec, np.asarray(vec), [vec], np.asarray([vec], dtype=np.float64)]
        for q in queries:  # lists too: the store takes any array-like
            with pytest.raises(InvalidInputError, match="float32"):
                engine.search(q, k=2)
        with pytest.raises(InvalidInputError, match="float32"):
            engine.upsert(["huge"], np.asarray([vec]))
    assert not engine.fetch(["huge"])


def test_float32_vectors_whose_squared_norm_overflows_search_without_a_warning(engine: VectorStore) -> None:
    """Components of 1e20 are valid float32, but their squared norm is not: the one-query fast path's float32 dot
    overflowed with a RuntimeWarning before the float64 path handled the vector (normalised under cosine)."""
    q = np.full((1, DIM), 1e20, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = engine.search(q, k=3, params=EXACT)[0]
    want = engine.search(np.full((1, DIM), 1.0, np.float32), k=3, params=EXACT)[0]
    assert [h.id for h in got] == [h.id for h in want]


# ------------------------------------------------------------------------------ which fields exist
FIELD_PAYLOADS: list[dict[str, Any]] = [
    {"flag": True, "meta": {"lang": "en"}, "tags": ["a"], "none": None},
    {"flag": False, "a.b": [], "arr": [{"k": 1}], "empty": [], "\\x": 1, 'q"k': None},
]
FIELDS: list[tuple[str, bool]] = [
    ("flag", True),
    ("flg", False),
    ("meta.lang", True),
    ("meta.lng", False),
    ("meta", True),
    ("tags", True),
    ("none", True),  # null counts: the field is there
    ("empty", False),  # [] does not (as $exists and null filters read it)
    ("a.b", False),  # a literal [] and no nested path
    ("arr.k", True),  # through an array of objects
    ("\\x", True),  # keys Qdrant cannot name in a path: answered in Python
    ('q"k', True),
    ("nope", False),
]


def test_has_field_is_answered_alike_on_every_engine(engine: VectorStore) -> None:
    """The missing-field hint asks the searched index: Qdrant answered None (cannot tell), so a Qdrant-only
    collection never hinted and a collection with FAISS hinted only when the Qdrant answer came back short."""
    engine.delete(IDS)
    engine.upsert(IDS[:2], VECS[:2], FIELD_PAYLOADS)
    try:
        for path, expected in FIELDS:
            assert any(holds_path(p, path) for p in FIELD_PAYLOADS) is expected, path  # the rule as documented
            assert engine.has_field(path) is expected, path
    finally:
        engine.delete(IDS[:2])
        engine.upsert(IDS, VECS, [{} for _ in IDS])


def test_filter_refusals_are_filter_errors_everywhere(engine: VectorStore) -> None:
    with pytest.raises(FilterError):
        engine.search(VECS[0], k=2, filter={"\\x": {"$bogus": 1}}, params=EXACT)
    assert Filter.from_dict({"\\x": "A"}).fields == {"\\x"}


def test_integer_rule_needs_no_engine(tmp_path: Path) -> None:
    """The write-time rule is the store's, before any engine is asked: the same message on every engine."""
    msgs = set()
    for eng in ("flat", "edge", "local"):
        st_ = open_engine(eng, tmp_path / eng)
        try:
            with pytest.raises(InvalidInputError) as exc:
                st_.upsert(["x"], VECS[:1], [{"v": 2**64}])
            msgs.add(str(exc.value))
        finally:
            st_.close()
    assert len(msgs) == 1
