"""Hypothesis strategies for payloads and filters, shared by the filter tests.

Small pools of keys and values so that random filters hit random payloads often: keys with dots, spaces, a
double quote, a backslash, non-ASCII, the empty string and ``_id`` (the key Qdrant keeps its point id under);
values of every JSON kind, nested objects and arrays of objects.
Payloads also hold integers at and beyond ±2**53 (up to the int64 limits) and doubles of that size; filter numbers
stay within ±MAX_SAFE_INT (2**53 - 1, the documented limit: larger ones are a FilterError) and include its edges,
so every engine must order a stored 2**53 + 1 exactly against them.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# 'q"k' and "b\\s": keys no Qdrant JSON path can name (evaluated in Python on Qdrant); "_id": Qdrant's id key, escaped
TOP_KEYS = ["a", "b", "a.b", "Header 1", "é", "", 'q"k', "b\\s", "n", "_id", "_id~"]
INNER_KEYS = ["b", "c", "d", "_id"]
PATHS = [*TOP_KEYS, "a.c", "a.b.c", "b.c", "nope", "a.b.c.d", "_id.b", "a._id"]

MAX_SAFE = 2**53 - 1
# numbers a payload may hold beyond the filter limit: where doubles and exact integers part ways
BIG_NUMBERS = [2**53, 2**53 + 1, -(2**53), -(2**53) - 1, 2**63 - 1, -(2**63), float(2**53), 2.0**63, -1e300]
# the largest numbers a filter may hold (as a float only in filters: Qdrant Edge 0.9.0 stores a double of 16 or
# more significant digits up to 2 ulp off, so such doubles are outside what engines agree on; see README)
EDGE_NUMBERS = [MAX_SAFE, -MAX_SAFE, MAX_SAFE - 1]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, 2.0, 1.5, -0.5]),
    st.sampled_from(["x", "y", "1", "", "Ä b"]),
    st.sampled_from(EDGE_NUMBERS),
)
payload_scalars = st.one_of(scalars, st.sampled_from(BIG_NUMBERS))
json_values = st.recursive(
    payload_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(INNER_KEYS), inner, max_size=3),
    ),
    max_leaves=6,
)
payloads = st.dictionaries(st.sampled_from(TOP_KEYS), json_values, max_size=4)

numbers = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, -1.0]),
    st.sampled_from([*EDGE_NUMBERS, float(MAX_SAFE)]),
)
value_lists = st.lists(scalars, min_size=1, max_size=3)


@st.composite
def field_conditions(draw: st.DrawFn) -> dict[str, Any]:
    """One field condition, in any of the accepted spellings."""
    path = draw(st.sampled_from(PATHS))
    kind = draw(st.integers(0, 10))
    if kind == 0:
        return {path: draw(scalars)}
    if kind == 1:
        return {path: draw(value_lists)}
    if kind == 2:
        return {path: {"$eq": draw(scalars)}}
    if kind == 3:
        return {path: {"$ne": draw(scalars)}}
    if kind == 4:
        return {path: {"$in": draw(value_lists)}}
    if kind == 5:
        return {path: {"$nin": draw(value_lists)}}
    if kind == 6:
        ops = draw(st.lists(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), min_size=1, max_size=2, unique=True))
        return {path: {op: draw(numbers) for op in ops}}
    if kind == 7:
        return {path: {draw(st.sampled_from(["gt", "gte", "lt", "lte"])): draw(numbers)}}
    if kind == 8:
        return {path: {"$exists": draw(st.booleans())}}
    if kind == 9:
        return {path: {"$not": {draw(st.sampled_from(["$eq", "$gte", "$lt"])): draw(numbers)}}}
    return {path: {"$gte": draw(numbers), "$ne": draw(scalars)}}


filters = st.recursive(
    field_conditions(),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"$not": x}, inner),
        st.builds(lambda xs: {"$nor": xs}, st.lists(inner, min_size=1, max_size=2)),
    ),
    max_leaves=5,
)
