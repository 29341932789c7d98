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
        (OP.NE, 3, {"k": {"$ne": 3}}),
        (OP.GT, 1.5, {"k": {"$gt": 1.5}}),
        (OP.GTE, 2, {"k": {"$gte": 2}}),
        (OP.LT, 2, {"k": {"$lt": 2}}),
        (OP.LTE, 2, {"k": {"$lte": 2}}),
        (OP.IN, ["a", "b"], {"k": {"$in": ["a", "b"]}}),
        (OP.IN, "a", {"k": {"$in": ["a"]}}),
        (OP.NIN, [1, 2], {"k": {"$nin": [1, 2]}}),
        (OP.ANY, ["a", "b"], {"k": {"$in": ["a", "b"]}}),
        (OP.ALL, ["a", "b"], {"$and": [{"k": {"$eq": "a"}}, {"k": {"$eq": "b"}}]}),
        (OP.CONTAINS, "a", {"k": {"$eq": "a"}}),
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
    a = MetadataFilter(key="a", value=1)
    b = MetadataFilter(key="b", operator=OP.GT, value=2)
    assert translate_filters(MetadataFilters(filters=[a, b])) == {"$and": [{"a": {"$eq": 1}}, {"b": {"$gt": 2}}]}
    assert translate_filters(MetadataFilters(filters=[a, b], condition=FilterCondition.OR)) == {
        "$or": [{"a": {"$eq": 1}}, {"b": {"$gt": 2}}]
    }
    assert translate_filters(MetadataFilters(filters=[a, b], condition=FilterCondition.NOT)) == {
        "$not": {"$or": [{"a": {"$eq": 1}}, {"b": {"$gt": 2}}]}
    }
    inner = MetadataFilters(filters=[a, b], condition=FilterCondition.OR)
    c = MetadataFilter(key="c", operator=OP.NE, value="x")
    assert translate_filters(MetadataFilters(filters=[inner, c])) == {
        "$and": [{"$or": [{"a": {"$eq": 1}}, {"b": {"$gt": 2}}]}, {"c": {"$ne": "x"}}]
    }
    assert translate_filters(MetadataFilters(filters=[a])) == {"a": {"$eq": 1}}
    assert translate_filters(MetadataFilters(filters=[ExactMatchFilter(key="e", value="v")])) == {"e": {"$eq": "v"}}
    assert translate_filters(None) is None and translate_filters(MetadataFilters(filters=[])) is None
