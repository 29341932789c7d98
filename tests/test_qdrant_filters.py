"""The Qdrant translation of the filter model, checked without a store against qdrant-client's own evaluator.

qdrant-client local mode evaluates a ``models.Filter`` in Python the way the server does (its
``payload_filters.check_filter``); running the translation through it is a cheap way to try many random
filters. The stores themselves are compared with the reference in test_filter_congruence.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.errors import FilterError
from retrieval.filters import Eq, Filter, Node
from retrieval.stores.qdrant_common import json_path, point_id, to_qdrant_filter, with_id
from tests.filter_strategies import filters, payloads


def qdrant_matches(flt: Filter, pls: list[dict[str, Any]]) -> list[int]:
    """Indexes of the payloads the translated filter selects, evaluated by qdrant-client's local engine."""
    from qdrant_client import models as m
    from qdrant_client.local.payload_filters import check_filter

    pids = [point_id(f"p{i}") for i in range(len(pls))]

    def fallback(node: Node) -> list[Any]:
        sub = Filter(node)
        return [pid for pid, pl in zip(pids, pls, strict=True) if sub.matches(pl)]

    qf = to_qdrant_filter(flt, m, fallback=fallback)
    if qf is None:
        return list(range(len(pls)))
    return [i for i, pl in enumerate(pls) if check_filter(qf, with_id(f"p{i}", pl), pids[i], has_vector={})]


@settings(max_examples=400, deadline=None)
@given(st.lists(payloads, min_size=1, max_size=20), filters)
def test_translation_equals_the_reference(pls: list[dict[str, Any]], spec: dict[str, Any]) -> None:
    flt = Filter.from_dict(spec)
    assert qdrant_matches(flt, pls) == [i for i, pl in enumerate(pls) if flt.matches(pl)]


def test_null_on_a_nested_path_needs_every_shape_empty() -> None:
    # "a.b" is both a.b (objects) and a[].b (arrays of objects): null means empty under both
    pls = [{"a": {"b": 1}}, {"a": [{"b": 1}]}, {"a": [{"c": 1}]}, {"a": {"b": None}}, {}]
    assert qdrant_matches(Filter.from_dict({"a.b": None}), pls) == [2, 3, 4]
    assert qdrant_matches(Filter.from_dict({"a.b": {"$exists": True}}), pls) == [0, 1]


def test_json_path_quotes_keys_and_refuses_double_quotes() -> None:
    assert json_path(["genre"]) == "genre"
    assert json_path(["Header 1"]) == '"Header 1"'
    assert json_path(["a.b"]) == '"a.b"'
    assert json_path(["a", "b", "c"], [True, False]) == "a[].b.c"
    assert json_path(['q"k']) is None


def test_inexpressible_key_without_fallback_is_a_filter_error() -> None:
    from qdrant_client import models as m

    with pytest.raises(FilterError, match="cannot be expressed"):
        to_qdrant_filter(Filter(Eq('q"k', 1)), m)
