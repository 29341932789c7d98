"""LlamaIndex ``MetadataFilters`` → simlookup's filter language (Mongo-style dicts for ``Filter.from_dict``).

Operators: == != > >= < <= in nin, any (an array field holds any of the values), all (holds every value),
contains (holds the value), is_empty (missing, null, [] or ""). Conditions: and, or, not (none of the filters
match, as LlamaIndex's SimpleVectorStore reads it); nested ``MetadataFilters`` nest. ``!=`` and ``nin``
match points that lack the field, like LlamaIndex's own store. On an array field ==, in and != follow the
filter language (any element), where LlamaIndex's in-memory store compares the whole list. text_match has no
equivalent and is refused.

Bools: LlamaIndex refuses ``True``/``False`` as a filter value, and in the filter language a bool never equals a
number. So in this translation only, a value 0 or 1 (int or float) compared for equality (== != in nin any all
contains) also matches the bool False or True: ``flag == 1`` becomes ``{"$or": [{"flag": {"$eq": 1}},
{"flag": {"$eq": True}}]}``, ``flag != 1`` its negation. (Python's ``True == 1`` gives LlamaIndex's own store
the same answer.) Ranges still match numbers only.
Plain Python on purpose: importing this module does not import llama_index.
"""

from __future__ import annotations

from typing import Any

from retrieval.errors import FilterError

_RANGE = {">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}


def _value(x: Any) -> str:
    return str(getattr(x, "value", x))


def _as_list(key: str, op: str, value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if value is None:
        raise FilterError(f"metadata filter {key!r} {op}: needs a list of values")
    return [value]


def _bool_twin(v: Any) -> bool | None:
    """The bool a filter value 0 or 1 stands for (LlamaIndex cannot pass a bool), else None."""
    if isinstance(v, int | float) and not isinstance(v, bool) and v in (0, 1):
        return bool(v)
    return None


def _eq(key: str, value: Any) -> dict[str, Any]:
    """``key == value``, where a value 0/1 also matches the bool False/True."""
    twin = _bool_twin(value)
    if twin is None:
        return {key: {"$eq": value}}
    return {"$or": [{key: {"$eq": value}}, {key: {"$eq": twin}}]}


def _any_of(key: str, values: list[Any]) -> dict[str, Any]:
    """``key in values``, where each value 0/1 also matches the bool False/True."""
    twins = list(dict.fromkeys(t for t in map(_bool_twin, values) if t is not None))
    if not twins:
        return {key: {"$in": values}}
    return {"$or": [{key: {"$in": values}}, {key: {"$in": twins}}]}


def translate_filter(f: Any) -> dict[str, Any]:
    """One ``MetadataFilter`` (or legacy ``ExactMatchFilter``) → a filter dict."""
    if hasattr(f, "filters"):
        spec = translate_filters(f)
        if spec is None:
            raise FilterError("an empty nested MetadataFilters has no meaning inside another filter")
        return spec
    key, value = f.key, f.value
    op = _value(getattr(f, "operator", "=="))
    if op in ("==", "contains"):  # contains: an element equals (a scalar field: the value equals)
        return _eq(key, value)
    if op == "!=":
        return {key: {"$ne": value}} if _bool_twin(value) is None else {"$not": _eq(key, value)}
    if op in _RANGE:
        return {key: {_RANGE[op]: value}}
    if op in ("in", "any"):
        return _any_of(key, _as_list(key, op, value))
    if op == "nin":
        values = _as_list(key, op, value)
        if any(_bool_twin(v) is not None for v in values):
            return {"$not": _any_of(key, values)}
        return {key: {"$nin": values}}
    if op == "all":
        return {"$and": [_eq(key, v) for v in _as_list(key, op, value)]}
    if op == "is_empty":
        return {"$or": [{key: {"$eq": None}}, {key: {"$eq": ""}}]}  # null also matches missing and []
    raise FilterError(
        f"metadata filter operator {op!r} on {key!r} has no equivalent in simlookup's filter language "
        "(supported: ==, !=, >, >=, <, <=, in, nin, any, all, contains, is_empty)"
    )


def translate_filters(filters: Any) -> dict[str, Any] | None:
    """``MetadataFilters`` (conditions and, or, not; nested) → a filter dict, or None for no filter."""
    if filters is None or not filters.filters:
        return None
    parts = [translate_filter(f) for f in filters.filters]
    cond = _value(filters.condition or "and")
    if cond == "and":
        return parts[0] if len(parts) == 1 else {"$and": parts}
    if cond == "or":
        return parts[0] if len(parts) == 1 else {"$or": parts}
    if cond == "not":
        return {"$not": parts[0] if len(parts) == 1 else {"$or": parts}}
    raise FilterError(f"unknown metadata filter condition {cond!r}: use and, or, not")
