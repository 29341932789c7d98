"""The filter language: parsing, errors, the CLI form, the reference semantics, and the payload index against it."""

from __future__ import annotations

import math
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.errors import FilterError, InvalidInputError
from retrieval.filters import MAX_SAFE_INT, And, Eq, Exists, Filter, In, Not, Or, Range
from retrieval.payload_index import PayloadIndex
from simlookup.filter_args import coerce, parse_filter_args
from tests.filter_strategies import TOP_KEYS, filters, json_values, payloads, scalars


# ------------------------------------------------------------------------------------------------ parsing
def test_plain_forms_parse_to_the_tree() -> None:
    f = Filter.from_dict({"genre": "news", "split": ["dev", "test"], "year": {"gte": 2012}})
    assert f.root == And((Eq("genre", "news"), In("split", ("dev", "test")), Range("year", gte=2012.0)))


def test_mongo_operators_parse_to_the_tree() -> None:
    f = Filter.from_dict(
        {
            "$or": [{"genre": "news"}, {"tags": {"$in": ["a"]}}],
            "year": {"$gte": 2014, "$lt": 2020, "$ne": 2016},
            "x": {"$exists": False},
            "y": {"$nin": [1, None]},
            "z": {"$not": {"$gt": 5}},
        }
    )
    assert f.root == And(
        (
            Or((Eq("genre", "news"), Eq("tags", "a"))),
            Range("year", gte=2014.0, lt=2020.0),
            Not(Eq("year", 2016)),
            Not(Exists("x")),
            Not(In("y", (1, None))),
            Not(Range("z", gt=5.0)),
        )
    )
    assert f.condition_count == 7
    assert f.fields == {"genre", "tags", "year", "x", "y", "z"}


def test_round_trip_through_to_dict() -> None:
    spec = {"$or": [{"a.b": None}, {"$not": {"c": {"$in": [1, "x", True]}}}], "d": {"$exists": True}}
    f = Filter.from_dict(spec)
    assert Filter.from_dict(f.to_dict()) == f


def test_empty_filter_is_falsy_and_matches_everything() -> None:
    for f in (Filter(), Filter.from_dict(None), Filter.from_dict({}), Filter.from_dict({"$and": [{}]})):
        assert not f
        assert f.condition_count == 0
        assert f.matches({"anything": 1})
    assert Filter.from_dict({"a": 1})


def test_combinators() -> None:
    f = (Filter.eq("a", 1) & Filter.range("b", lt=3)) | ~Filter.exists("c")
    assert f.matches({"a": 1, "b": 2, "c": 1})
    assert f.matches({})
    assert not f.matches({"a": 1, "b": 5, "c": 1})
    assert Filter.any_of("t", ["x", "y"]).matches({"t": ["z", "y"]})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"a": {"$foo": 1}}, "unknown operator"),
        ({"$foo": [{"a": 1}]}, "unknown filter operator"),
        ({"$gte": 3}, "field operators go inside a field"),
        ({"a": {"b": 1}}, "nested field write the dotted path"),
        ({"a": {}}, "empty operator object"),
        ({"a": {"$gte": math.nan}}, "finite number"),
        ({"a": {"gte": math.inf}}, "finite number"),
        ({"a": {"$lt": "x"}}, "must be a number"),
        ({"a": {"$lt": True}}, "must be a number"),
        ({"a": math.nan}, "not a finite number"),
        ({"a": []}, "at least one value"),
        ({"a": {"$in": []}}, "at least one value"),
        ({"a": {"$nin": []}}, "at least one value"),
        ({"a": {"$in": "x"}}, "take a list"),
        ({"a": {"$exists": 1}}, "true or false"),
        ({"a": {"$not": 3}}, "operator object"),
        ({"a": [{"b": 1}]}, "not a string, number, boolean or null"),
        ({"$or": []}, "non-empty list"),
        ({"$and": {"a": 1}}, "non-empty list"),
        ({"$or": [1]}, "list of filter objects"),
        ({"$not": [{"a": 1}]}, "takes a filter object"),
        ({"a": {"$gte": 1, "gte": 2}}, "given twice"),
        ({"a": 2**53}, r"beyond ±9007199254740991 \(2\*\*53 - 1\)"),  # issue 21 item 2: engines disagree there
        ({"a": -(2**53)}, "beyond"),
        ({"a": {"$gt": 2**53}}, "beyond"),
        ({"a": {"$lte": -1e300}}, "beyond"),
        ({"a": [1, 2**63 - 1]}, "beyond"),
        ({"a": {"$nin": [2.0**60]}}, "beyond"),
        ({"a": {"$ne": 10**400}}, r"number 1000000000000000\.\.\. \(401 characters\) is beyond"),
    ],
)
def test_malformed_filters_raise_a_clear_error(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(FilterError, match=message):
        Filter.from_dict(spec)


def test_numbers_beyond_the_limit_are_refused_however_built() -> None:
    """Issue 21 item 2: the node classes and the CLI refuse them too; the limit itself is accepted."""
    for build in (
        lambda: Eq("v", 2**53),
        lambda: In("v", ("x", -(2**53) - 1)),
        lambda: Range("v", gt=2.0**53),
        lambda: Filter.range("v", lt=2**63 - 1),
        lambda: parse_filter_args(["v=9007199254740992"]),
        lambda: parse_filter_args(["v>=1e16"]),
    ):
        with pytest.raises(FilterError, match="beyond"):
            build()
    assert Filter.eq("v", MAX_SAFE_INT).matches({"v": MAX_SAFE_INT})
    assert Filter.range("v", gte=-MAX_SAFE_INT).matches({"v": -MAX_SAFE_INT})


def test_not_a_mapping_and_too_deep() -> None:
    with pytest.raises(FilterError, match="JSON object"):
        Filter.from_dict(["a", 1])  # type: ignore[arg-type]
    deep: dict[str, Any] = {"a": 1}
    for _ in range(40):
        deep = {"$not": deep}
    with pytest.raises(FilterError, match="deeper"):
        Filter.from_dict(deep)


# -------------------------------------------------------------------------------------------------- CLI
def test_cli_forms() -> None:
    f = parse_filter_args(["genre=main-news", "split=dev,test", "year>=2014", "score<3.5", "flag=true", "x!=1"])
    assert f.root == And(
        (
            Eq("genre", "main-news"),
            In("split", ("dev", "test")),
            Range("year", gte=2014.0),
            Range("score", lt=3.5),
            Eq("flag", True),
            Not(Eq("x", 1)),
        )
    )
    assert parse_filter_args(['{"$or": [{"a": 1}, {"b": null}]}']).root == Or((Eq("a", 1), Eq("b", None)))
    assert parse_filter_args(["Header 1=Intro"]).root == Eq("Header 1", "Intro")
    assert not parse_filter_args([])


def test_cli_issue_cases() -> None:
    """Issue 11 item 7: a float equality and a mixed-type any-of parse; a NaN bound is a clear error."""
    assert parse_filter_args(["year=2012.0"]).root == Eq("year", 2012.0)
    assert parse_filter_args(["genre=main-news,2012"]).root == In("genre", ("main-news", 2012))
    with pytest.raises(FilterError, match="finite number"):
        parse_filter_args(["year>=nan"])
    with pytest.raises(FilterError, match="finite number"):
        parse_filter_args(["year<inf"])
    with pytest.raises(FilterError, match="cannot parse"):
        parse_filter_args(["year"])
    with pytest.raises(FilterError, match="not valid JSON"):
        parse_filter_args(["{nope"])


def test_coerce_keeps_words_that_float_would_read() -> None:
    assert coerce("12") == 12 and coerce("-1.5e2") == -150.0
    assert coerce("TRUE") is True and coerce("null") is None
    for word in ("nan", "NaN", "inf", "Infinity", "1_000", "0x10", "main-news"):
        assert coerce(word) == word


# ------------------------------------------------------------------------------------ reference semantics
@pytest.mark.parametrize(
    ("spec", "payload", "expected"),
    [
        ({"tags": "x"}, {"tags": ["x", "y"]}, True),  # array: any element
        ({"flag": True}, {"flag": 1}, False),  # a bool never equals a number
        ({"flag": 1}, {"flag": True}, False),
        ({"x": 2.0}, {"x": 2}, True),  # 2 equals 2.0
        ({"x": 2}, {"x": 2.0}, True),
        ({"x": "2"}, {"x": 2}, False),
        ({"x": {"$gte": 1}}, {"x": True}, False),  # ranges are numbers only
        ({"x": {"$gte": 1}}, {"x": "5"}, False),
        ({"x": {"$gte": 1, "$lt": 5}}, {"x": [0, 9]}, False),  # one element meets all bounds
        ({"x": {"$gte": 1, "$lt": 5}}, {"x": [0, 3]}, True),
        ({"x": {"$ne": 1}}, {}, True),  # negations match points lacking the field
        ({"x": {"$nin": [1]}}, {}, True),
        ({"x": {"$not": {"$gt": 1}}}, {}, True),
        ({"x": {"$ne": 1}}, {"x": [1, 2]}, False),
        ({"x": None}, {}, True),  # null: missing, null, [], or holding null
        ({"x": None}, {"x": None}, True),
        ({"x": None}, {"x": []}, True),
        ({"x": None}, {"x": [1, None]}, True),
        ({"x": None}, {"x": 0}, False),
        ({"x": None}, {"x": {}}, False),
        ({"x": {"$exists": True}}, {"x": None}, False),
        ({"x": {"$exists": True}}, {"x": []}, False),
        ({"x": {"$exists": True}}, {"x": [None]}, True),
        ({"x": {"$exists": True}}, {"x": False}, True),
        ({"a.b": 1}, {"a": {"b": 1}}, True),  # nested path
        ({"a.b": 1}, {"a": [{"b": 2}, {"b": 1}]}, True),  # through an array of objects
        ({"a.b": 1}, {"a": [[{"b": 1}]]}, False),  # not through an array of arrays
        ({"a.b": 1}, {"a.b": 2, "a": {"b": 1}}, False),  # the literal key wins
        ({"a.b": 1}, {"a.b": None, "a": {"b": 1}}, False),
        ({"a.b": 1}, {"a.b": [], "a": {"b": 1}}, True),  # ... unless it is []
        ({"a.b.c": 1}, {"a.b": {"c": 1}}, False),  # intermediate dotted keys are not split
        ({"x": 1}, {"x": [[1]]}, False),  # arrays are opened one level
        ({"Header 1": "Intro"}, {"Header 1": "Intro"}, True),  # any string is a field name
        ({"": 1}, {"": 1}, True),
        ({"x": 9007199254740991}, {"x": 9007199254740993}, False),  # exact within the limit, big payloads too
        ({"x": {"$gt": 9007199254740991}}, {"x": 9007199254740993}, True),
        ({"x": {"$lt": -9007199254740991}}, {"x": -(2**63)}, True),
        ({"x": {"$gt": 9007199254740991}}, {"x": 2**63 - 1}, True),
    ],
)
def test_reference_semantics(spec: dict[str, Any], payload: dict[str, Any], expected: bool) -> None:
    assert Filter.from_dict(spec).matches(payload) is expected


# ---------------------------------------------------------------------------- payload index = reference
def _check_index(pi: PayloadIndex, live: dict[int, dict[str, Any]], specs: list[dict[str, Any]]) -> None:
    for spec in specs:
        f = Filter.from_dict(spec)
        want = sorted(fid for fid, pl in live.items() if f.matches(pl))
        got = pi.match(f)
        assert got.dtype == np.int64
        assert got.tolist() == want, spec
        assert pi.count(f) == len(want)


@settings(max_examples=150, deadline=None)
@given(st.lists(payloads, min_size=1, max_size=25), st.lists(filters, min_size=1, max_size=8), st.randoms())
def test_payload_index_equals_the_reference(pls: list[dict[str, Any]], specs: list[dict[str, Any]], rnd: Any) -> None:
    pi = PayloadIndex()
    live = {i * 3: pl for i, pl in enumerate(pls)}
    pi.add(list(live), list(live.values()))
    _check_index(pi, live, specs)
    # remove some, replace some, add new ones: the index follows
    gone = [fid for fid in live if rnd.random() < 0.3]
    pi.remove(gone)
    for fid in gone:
        del live[fid]
    changed = {fid: pls[rnd.randrange(len(pls))] for fid in list(live)[:3]} | {
        1000 + i: pl for i, pl in enumerate(pls[:2])
    }
    pi.add(list(changed), list(changed.values()))
    live.update(changed)
    assert len(pi) == len(live)
    _check_index(pi, live, specs)


column_values = st.sampled_from(
    [
        st.sampled_from(["x", "y", "1", "", "Ä b"]),  # a string column (bitmaps built on the first read)
        st.one_of(st.integers(-3, 3), st.sampled_from([0.0, 1.5, -0.5, 2.0])),  # a number column
        st.integers(2**62, 2**70),  # ints beyond int64 / float precision
        st.booleans(),
        st.none(),
        scalars,  # mixed scalar types and nulls
        json_values,  # nested: the batch goes back to the payload-by-payload walk
    ]
)


@st.composite
def uniform_batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Payloads that all have the same keys (the bulk-load shape), one value kind per key."""
    keys = draw(st.lists(st.sampled_from(TOP_KEYS), min_size=1, max_size=4, unique=True))
    kinds = {k: draw(column_values) for k in keys}
    n = draw(st.integers(1, 30))
    return [{k: draw(kinds[k]) for k in keys} for _ in range(n)]


@settings(max_examples=150, deadline=None)
@given(uniform_batches(), uniform_batches(), st.lists(filters, min_size=1, max_size=8), st.randoms())
def test_payload_index_column_path_equals_the_reference(
    first: list[dict[str, Any]], second: list[dict[str, Any]], specs: list[dict[str, Any]], rnd: Any
) -> None:
    """Bulk batches indexed column by column (lazy string bitmaps, numbers straight into the sorted arrays)
    answer like the reference, also after removals, replacements and a second batch."""
    import retrieval.payload_index as mod

    with mock.patch.object(mod, "COLUMN_MIN", 1), mock.patch.object(mod, "TAIL_MAX", 4):
        pi = PayloadIndex()
        live = {i * 2: pl for i, pl in enumerate(first)}
        pi.add(list(live), list(live.values()))
        if rnd.random() < 0.5:
            _check_index(pi, live, specs)
        gone = [fid for fid in live if rnd.random() < 0.3]
        pi.remove(gone)
        for fid in gone:
            del live[fid]
        more = {fid: second[j % len(second)] for j, fid in enumerate(list(live)[:2])} | {
            1 + 2 * i: pl for i, pl in enumerate(second)
        }
        pi.add(list(more), list(more.values()))
        live.update(more)
        assert len(pi) == len(live)
        _check_index(pi, live, specs)


def test_payload_index_numbers_merge_and_stale_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    import retrieval.payload_index as mod

    monkeypatch.setattr(mod, "TAIL_MAX", 8)
    pi = PayloadIndex()
    live: dict[int, dict[str, Any]] = {}
    rng = np.random.default_rng(0)
    for step in range(30):
        fids = rng.choice(60, size=6, replace=False).tolist()
        pls = [{"v": float(rng.integers(0, 10)), "w": [int(rng.integers(0, 5)), "s"]} for _ in fids]
        pi.add(fids, pls)
        live.update(zip(fids, pls, strict=True))
        if step % 3 == 0:
            drop = rng.choice(60, size=4, replace=False).tolist()
            pi.remove(drop)
            for d in drop:
                live.pop(d, None)
        _check_index(pi, live, [{"v": {"$gte": 3, "$lt": 7}}, {"w": 2}, {"v": 4.0}, {"v": {"$ne": 4}}, {"w": None}])


def test_payload_index_rejects_ids_outside_uint32() -> None:
    pi = PayloadIndex()
    with pytest.raises(InvalidInputError, match="payload index ids"):
        pi.add([-1], [{}])
    with pytest.raises(InvalidInputError, match="payload index ids"):
        pi.add([2**32], [{}])
    with pytest.raises(InvalidInputError, match="2 fids but 1 payloads"):
        pi.add([1, 2], [{}])


def test_a_long_any_of_parses_in_linear_time_and_is_counted() -> None:
    """20,000 values took 50 s to parse (a quadratic duplicate check); the REST limit counts values."""
    f = Filter.from_dict({"year": [*range(20_000), 1, 1.0, True, "a", "a"]})
    assert f.value_count == 20_003 and f.condition_count == 1  # 1, 1.0 and True stay distinct values
    assert f.matches({"year": 19_999}) and not f.matches({"year": 20_000})


@pytest.mark.parametrize("arg", ["year==2012", "year=>2014", "year!=<3", "year=<2"])
def test_cli_double_operators_are_errors_not_strings(arg: str) -> None:
    """year==2012 used to be an equality with the string '=2012', matching nothing without a word."""
    with pytest.raises(FilterError, match="is not an operator"):
        parse_filter_args([arg])
