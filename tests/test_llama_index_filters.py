"""MetadataFilters → simlookup filter dicts: the translation alone (its meaning: test_llama_index_store)."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core", reason="pip install 'simlookup[llama-index]' to run these")

from llama_index.core.vector_stores.types import (  # noqa: E402
    ExactMatchFilter,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from retrieval.errors import FilterError  # noqa: E402
from simlookup.integrations.llama_filters import translate_filters  # noqa: E402

OP = FilterOperator


def one(op: FilterOperator, value: object, key: str = "k") -> dict | None:
    return translate_filters(MetadataFilters(filters=[MetadataFilter(key=key, operator=op, value=value)]))


@pytest.mark.parametrize(
    ("op", "value", "want"),
    [
        (OP.EQ, "a", {"k": {"$eq": "a"}}),
        (OP.EQ, 2, {"k": {"$eq": 2}}),
        (OP.NE, 3, {"k": {"$ne": 3}}),
        (OP.GT, 1.5, {"k": {"$gt": 1.5}}),
        (OP.GTE, 2, {"k": {"$gte": 2}}),
        (OP.LT, 2, {"k": {"$lt": 2}}),
        (OP.LTE, 2, {"k": {"$lte": 2}}),
        (OP.IN, ["a", "b"], {"k": {"$in": ["a", "b"]}}),
        (OP.IN, "a", {"k": {"$in": ["a"]}}),
        (OP.NIN, [2, 3], {"k": {"$nin": [2, 3]}}),
        (OP.ANY, ["a", "b"], {"k": {"$in": ["a", "b"]}}),
        (OP.ALL, ["a", "b"], {"$and": [{"k": {"$eq": "a"}}, {"k": {"$eq": "b"}}]}),
        (OP.CONTAINS, "a", {"k": {"$eq": "a"}}),
        (OP.GT, 0, {"k": {"$gt": 0}}),  # ranges match numbers only: no bool twin
        (OP.IS_EMPTY, None, {"$or": [{"k": {"$eq": None}}, {"k": {"$eq": ""}}]}),
    ],
)
def test_each_operator(op: FilterOperator, value: object, want: dict) -> None:
    assert one(op, value) == want


@pytest.mark.parametrize("op", [OP.TEXT_MATCH, OP.TEXT_MATCH_INSENSITIVE])
def test_text_match_has_no_equivalent(op: FilterOperator) -> None:
    with pytest.raises(FilterError, match="no equivalent"):
        one(op, "abc")


def test_conditions_and_nesting() -> None:
    a = MetadataFilter(key="a", value=7)
    b = MetadataFilter(key="b", operator=OP.GT, value=2)
    assert translate_filters(MetadataFilters(filters=[a, b])) == {"$and": [{"a": {"$eq": 7}}, {"b": {"$gt": 2}}]}
    assert translate_filters(MetadataFilters(filters=[a, b], condition=FilterCondition.OR)) == {
        "$or": [{"a": {"$eq": 7}}, {"b": {"$gt": 2}}]
    }
    assert translate_filters(MetadataFilters(filters=[a, b], condition=FilterCondition.NOT)) == {
        "$not": {"$or": [{"a": {"$eq": 7}}, {"b": {"$gt": 2}}]}
    }
    inner = MetadataFilters(filters=[a, b], condition=FilterCondition.OR)
    c = MetadataFilter(key="c", operator=OP.NE, value="x")
    assert translate_filters(MetadataFilters(filters=[inner, c])) == {
        "$and": [{"$or": [{"a": {"$eq": 7}}, {"b": {"$gt": 2}}]}, {"c": {"$ne": "x"}}]
    }
    assert translate_filters(MetadataFilters(filters=[a])) == {"a": {"$eq": 7}}
    assert translate_filters(MetadataFilters(filters=[ExactMatchFilter(key="e", value="v")])) == {"e": {"$eq": "v"}}
    assert translate_filters(None) is None and translate_filters(MetadataFilters(filters=[])) is None


T1 = {"$or": [{"k": {"$eq": 1}}, {"k": {"$eq": True}}]}
F0 = {"$or": [{"k": {"$eq": 0}}, {"k": {"$eq": False}}]}


@pytest.mark.parametrize(
    ("op", "value", "want"),
    [
        (OP.EQ, 1, T1),
        (OP.EQ, 0, F0),
        (OP.EQ, 1.0, {"$or": [{"k": {"$eq": 1.0}}, {"k": {"$eq": True}}]}),
        (OP.NE, 1, {"$not": T1}),
        (OP.NE, 0, {"$not": F0}),
        (OP.IN, [0, 1, 5], {"$or": [{"k": {"$in": [0, 1, 5]}}, {"k": {"$in": [False, True]}}]}),
        (OP.IN, [1, 1.0], {"$or": [{"k": {"$in": [1, 1.0]}}, {"k": {"$in": [True]}}]}),
        (OP.ANY, [1], {"$or": [{"k": {"$in": [1]}}, {"k": {"$in": [True]}}]}),
        (OP.NIN, [1, 5], {"$not": {"$or": [{"k": {"$in": [1, 5]}}, {"k": {"$in": [True]}}]}}),
        (OP.ALL, [0, 1], {"$and": [F0, T1]}),
        (OP.CONTAINS, 1, T1),
    ],
)
def test_0_and_1_also_match_bools(op: FilterOperator, value: object, want: dict) -> None:
    """LlamaIndex refuses a bool filter value, and a bool never equals a number: 0/1 stand for False/True."""
    assert one(op, value) == want


@pytest.mark.parametrize(
    ("op", "value", "payload", "want"),
    [
        (OP.EQ, 1, {"k": True}, True),
        (OP.EQ, 1, {"k": 1}, True),
        (OP.EQ, 1, {"k": False}, False),
        (OP.EQ, 0, {"k": False}, True),
        (OP.NE, 0, {"k": False}, False),
        (OP.NE, 0, {"k": True}, True),
        (OP.NE, 1, {}, True),
        (OP.IN, [0, 5], {"k": False}, True),
        (OP.NIN, [1], {"k": True}, False),
        (OP.NIN, [1], {"k": False}, True),
        (OP.ALL, [0, 1], {"k": [True, False]}, True),
        (OP.CONTAINS, 1, {"k": [False, True]}, True),
    ],
)
def test_bool_translations_mean_what_they_say(op: FilterOperator, value: object, payload: dict, want: bool) -> None:
    from retrieval.filters import Filter

    spec = one(op, value)
    assert spec is not None and Filter.from_dict(spec).matches(payload) is want
