"""What the Qdrant adapters share: point ids, filter translation, payload indexes, store metadata."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np

from retrieval.errors import FilterError, InvalidInputError
from retrieval.filters import And, Condition, Eq, Exists, Filter, Node, Not, Or, Range, as_double

# Fixed namespace: the same corpus id maps to the same Qdrant point id everywhere.
ID_NAMESPACE = uuid.UUID("6f1c2a8e-3b0d-5e7a-9c41-2d8f0b6a5e13")
ID_KEY = "_id"  # the original string id, kept in the payload
PayloadIndexType = Literal["keyword", "integer", "float", "bool"]


def point_id(sid: str) -> str:
    """UUIDv5 of the corpus id (Qdrant ids are ints or UUIDs)."""
    return str(uuid.uuid5(ID_NAMESPACE, sid))


def with_id(sid: str, payload: dict[str, Any]) -> dict[str, Any]:
    if ID_KEY in payload:
        raise InvalidInputError(f"payload key {ID_KEY!r} is reserved for the point's original id")
    return {**payload, ID_KEY: sid}


def split_id(payload: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    p = dict(payload or {})
    sid = p.pop(ID_KEY, "")
    return str(sid), p


_BARE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
MAX_NESTED_SEGMENTS = 5  # a dotted path of n segments becomes 2**(n-1) Qdrant paths (objects or arrays of objects)
Fallback = Callable[[Node], list[Any]]


def json_path(segments: Sequence[str], arrays: Sequence[bool] = ()) -> str | None:
    """The Qdrant JSON path of these keys (quoted where needed); ``arrays[i]``: step into an array after key i.

    None when Qdrant cannot name a key (one holding a double quote).
    """
    parts = []
    for i, seg in enumerate(segments):
        if _BARE_KEY.match(seg):
            part = seg
        elif '"' in seg:
            return None
        else:
            part = f'"{seg}"'
        parts.append(part + ("[]" if i < len(arrays) and arrays[i] else ""))
    return ".".join(parts)


class QdrantFilterBuilder:
    """Translates the filter model into Qdrant conditions of one flavour: Edge or qdrant-client models.

    Every translation is exact (see ``retrieval.filters`` for the semantics): numbers compare through a range
    (2 equals 2.0, a bool is never a number), bools through a typed match, null through IsEmpty/IsNull, dotted
    paths through every object/array-of-objects path they can take, with the literal key winning. A condition
    Qdrant cannot express (a key holding a double quote, a path of more than ``MAX_NESTED_SEGMENTS`` keys) is
    evaluated in Python by ``fallback`` (the ids of the points it matches) and sent as a HasId condition.
    """

    def __init__(self, m: Any, edge: bool, fallback: Fallback | None = None) -> None:
        self.m = m
        self.edge = edge
        self.fallback = fallback

    # -- Qdrant primitives
    def filter(
        self, must: list[Any] | None = None, should: list[Any] | None = None, not_: list[Any] | None = None
    ) -> Any:
        return self.m.Filter(must=must or None, should=should or None, must_not=not_ or None)

    def true(self) -> Any:
        return self.m.Filter(must=[])

    def false(self) -> Any:
        return self.has_id([])

    def has_id(self, ids: list[Any]) -> Any:
        if self.edge:
            return self.m.HasIdCondition(set(ids))
        return self.m.HasIdCondition(has_id=list(ids))

    def is_empty(self, key: str) -> Any:
        return (
            self.m.IsEmptyCondition(key)
            if self.edge
            else self.m.IsEmptyCondition(is_empty=self.m.PayloadField(key=key))
        )

    def is_null(self, key: str) -> Any:
        return (
            self.m.IsNullCondition(key) if self.edge else self.m.IsNullCondition(is_null=self.m.PayloadField(key=key))
        )

    def match(self, key: str, value: str | bool) -> Any:
        # Edge reads a Python bool as the integer 0/1 (it then matches numbers); numpy's bool reaches its bool variant
        v: Any = np.bool_(value) if self.edge and isinstance(value, bool) else value
        return self.m.FieldCondition(key=key, match=self.m.MatchValue(value=v))

    def match_any(self, key: str, values: list[str]) -> Any:
        return self.m.FieldCondition(key=key, match=self.m.MatchAny(any=values))

    def range(self, key: str, bounds: dict[str, float]) -> Any:
        cls = self.m.RangeFloat if self.edge else self.m.Range
        return self.m.FieldCondition(key=key, range=cls(**bounds))

    def all(self, conds: list[Any]) -> Any:
        return conds[0] if len(conds) == 1 else self.filter(must=conds)

    def any(self, conds: list[Any]) -> Any:
        if not conds:
            return self.false()
        return conds[0] if len(conds) == 1 else self.filter(should=conds)

    def not_(self, cond: Any) -> Any:
        return self.filter(not_=[cond])

    # -- the model
    def build(self, flt: Filter | None) -> Any:
        """A Qdrant Filter for flt (None for no filter)."""
        if flt is None or flt.root is None:
            return None
        cond = self.node(flt.root)
        return cond if isinstance(cond, self.m.Filter) else self.filter(must=[cond])

    def node(self, node: Node) -> Any:
        if isinstance(node, And):
            return self.all([self.node(c) for c in node.children]) if node.children else self.true()
        if isinstance(node, Or):
            return self.any([self.node(c) for c in node.children])
        if isinstance(node, Not):
            return self.not_(self.node(node.child))
        return self.leaf(node)

    def leaf(self, cond: Condition) -> Any:
        path = cond.path
        if path == ID_KEY:  # reserved for the point's own id: no user payload holds it
            return self.true() if Filter(cond).matches({}) else self.false()
        lit = json_path([path])
        segs = path.split(".")
        nested: list[str] = []
        if len(segs) > 1:
            if len(segs) > MAX_NESTED_SEGMENTS:
                return self._fallback(cond)
            for mask in range(2 ** (len(segs) - 1)):
                p = json_path(segs, [bool(mask >> i & 1) for i in range(len(segs) - 1)])
                if p is None:
                    return self._fallback(cond)
                nested.append(p)
        if lit is None:
            return self._fallback(cond)
        if not nested:
            return self.on_keys(cond, [lit])
        # the literal key wins when a point has it with any value but []: present = not IsEmpty or IsNull
        present = self.any([self.not_(self.is_empty(lit)), self.is_null(lit)])
        return self.any(
            [
                self.all([present, self.on_keys(cond, [lit])]),
                self.all([self.not_(present), self.on_keys(cond, nested)]),
            ]
        )

    def on_keys(self, cond: Condition, keys: list[str]) -> Any:
        """cond over the union of the values these (disjoint) Qdrant paths select."""
        if isinstance(cond, Exists):
            return self.any([self.not_(self.is_empty(k)) for k in keys])
        if isinstance(cond, Range):
            return self.any([self.range(k, cond.bounds()) for k in keys])
        values = [cond.value] if isinstance(cond, Eq) else list(cond.values)  # type: ignore[union-attr]
        out: list[Any] = []
        strings = [v for v in values if isinstance(v, str)]
        for k in keys:
            if len(strings) == 1:
                out.append(self.match(k, strings[0]))
            elif strings:
                out.append(self.match_any(k, strings))
            for v in values:
                if isinstance(v, bool):
                    out.append(self.match(k, v))
                elif isinstance(v, (int, float)):
                    x = as_double(v)
                    out.append(self.range(k, {"gte": x, "lte": x}))
        if any(v is None for v in values):  # missing, null, [] or holding null
            out.append(self.all([self.is_empty(k) for k in keys]))
            out.extend(self.is_null(k) for k in keys)
        return self.any(out)

    def _fallback(self, cond: Condition) -> Any:
        if self.fallback is None:
            raise FilterError(f"filter on {cond.path!r} cannot be expressed as a Qdrant filter")
        return self.has_id(self.fallback(cond))


def to_qdrant_filter(flt: Filter | None, m: Any, edge: bool = False, fallback: Fallback | None = None) -> Any:
    """Translate a Filter into a qdrant Filter built from module m (qdrant_client.models or qdrant_edge)."""
    return QdrantFilterBuilder(m, edge, fallback).build(flt)


def python_fallback(records: Callable[[], Iterable[Any]]) -> Fallback:
    """A fallback that evaluates a condition in Python over every point ``records()`` yields (id, payload)."""

    def run(node: Node) -> list[Any]:
        f = Filter(node)
        return [r.id for r in records() if f.matches(split_id(r.payload)[1])]

    return run


def to_hits(points: Iterable[Any]) -> list[Any]:
    """Scored points (Edge or qdrant-client) → Hits with the original id and the payload without it."""
    from retrieval.stores.base import Hit

    out = []
    for p in points:
        sid, pl = split_id(p.payload)
        out.append(Hit(sid, float(p.score), pl))
    return out


def to_entries(records: Iterable[Any], vector_name: str) -> dict[str, tuple[np.ndarray | None, dict[str, Any]]]:
    """Retrieved records → {original id: (vector of this view or None, payload)}."""
    out: dict[str, tuple[np.ndarray | None, dict[str, Any]]] = {}
    for r in records:
        sid, pl = split_id(r.payload)
        v = r.vector
        if isinstance(v, dict):
            v = v.get(vector_name)
        out[sid] = (None if v is None else np.asarray(v, dtype=np.float32), pl)
    return out
