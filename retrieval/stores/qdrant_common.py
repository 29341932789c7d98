"""Qdrant translations for ``QdrantStore``: point ids, payload keys, filters, payload indexes, the top-up."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np

from retrieval.errors import FilterError, InvalidInputError
from retrieval.filters import And, Eq, Exists, Filter, Leaf, Node, Not, Or, Range, as_double

# Fixed namespace: the same corpus id maps to the same Qdrant point id everywhere.
ID_NAMESPACE = uuid.UUID("6f1c2a8e-3b0d-5e7a-9c41-2d8f0b6a5e13")
ID_KEY = "_id"  # the original string id, kept in the payload
# A user's own top-level key "_id" (or "_id~", "_id~~", ...) is stored with one more "~": ID_KEY stays the point's
# id, and every user key round-trips. Only top-level keys are escaped (nested objects are the user's alone).
_USER_ID_KEY = re.compile(r"^_id~*$")
_STORED_USER_ID_KEY = re.compile(r"^_id~+$")
PayloadIndexType = Literal["keyword", "integer", "float", "bool"]


def point_id(sid: str) -> str:
    """UUIDv5 of the corpus id (Qdrant ids are ints or UUIDs)."""
    return str(uuid.uuid5(ID_NAMESPACE, sid))


def stored_key(key: str) -> str:
    """The Qdrant payload key of a user's top-level key (``_id`` is stored as ``_id~``, ``_id~`` as ``_id~~``)."""
    return key + "~" if _USER_ID_KEY.match(key) else key


def user_key(key: str) -> str:
    """The user's key of a stored top-level payload key (the inverse of ``stored_key``)."""
    return key[:-1] if _STORED_USER_ID_KEY.match(key) else key


def with_id(sid: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as stored in Qdrant: the user's keys (escaped where needed) and the original id under ID_KEY."""
    if any(k.startswith(ID_KEY) for k in payload):
        payload = {stored_key(k): v for k, v in payload.items()}
    return {**payload, ID_KEY: sid}


def split_id(payload: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """A stored payload → (original id, the user's payload as written)."""
    p = dict(payload or {})
    sid = p.pop(ID_KEY, "")
    if any(k.startswith(ID_KEY) for k in p):
        p = {user_key(k): v for k, v in p.items()}
    return str(sid), p


_BARE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
MAX_NESTED_SEGMENTS = 5  # a dotted path of n segments becomes 2**(n-1) Qdrant paths (objects or arrays of objects)
Fallback = Callable[[Node], list[Any]]


def json_path(segments: Sequence[str], arrays: Sequence[bool] = ()) -> str | None:
    """The Qdrant JSON path of these keys (quoted where needed); ``arrays[i]``: step into an array after key i.

    None when Qdrant cannot name a key: a quoted key is any run of characters but a double quote and a backslash,
    with no escapes (Qdrant's ``json_path`` parser), so a key holding either has no path.
    """
    parts = []
    for i, seg in enumerate(segments):
        if _BARE_KEY.match(seg):
            part = seg
        elif '"' in seg or "\\" in seg:
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
    Qdrant cannot express (a key holding a double quote or a backslash, a path of more than
    ``MAX_NESTED_SEGMENTS`` keys) is evaluated in Python by ``fallback`` (the ids of the points it matches) and
    sent as a HasId condition.
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

    def has_vector(self, name: str) -> Any:
        """Points holding the named vector (a view of a multi-vector collection)."""
        return self.m.HasVectorCondition(name) if self.edge else self.m.HasVectorCondition(has_vector=name)

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

    @staticmethod
    def keys(path: str) -> tuple[str, list[str]] | None:
        """The Qdrant keys of a filter path: the literal top-level key, and (for a dotted path) every object /
        array-of-objects path it can take; None when Qdrant cannot name one of them (see ``json_path``)."""
        lit = json_path([stored_key(path)])
        segs = path.split(".")
        segs[0] = stored_key(segs[0])
        nested: list[str] = []
        if len(segs) > 1:
            if len(segs) > MAX_NESTED_SEGMENTS:
                return None
            for mask in range(2 ** (len(segs) - 1)):
                p = json_path(segs, [bool(mask >> i & 1) for i in range(len(segs) - 1)])
                if p is None:
                    return None
                nested.append(p)
        return None if lit is None else (lit, nested)

    def holds(self, path: str) -> Any:
        """Points holding ``path`` with a value or null (``retrieval.filters.holds_path``); None when Qdrant
        cannot name the path. Over every key the path can take: a literal key that holds ``[]`` holds nothing."""
        keys = self.keys(path)
        if keys is None:
            return None
        lit, nested = keys
        return self.any([self.any([self.not_(self.is_empty(k)), self.is_null(k)]) for k in [lit, *nested]])

    def leaf(self, cond: Leaf) -> Any:
        keys = self.keys(cond.path)
        if keys is None:
            return self._fallback(cond)
        lit, nested = keys
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

    def on_keys(self, cond: Leaf, keys: list[str]) -> Any:
        """cond over the union of the values these (disjoint) Qdrant paths select."""
        if isinstance(cond, Exists):
            return self.any([self.not_(self.is_empty(k)) for k in keys])
        if isinstance(cond, Range):
            return self.any([self.range(k, cond.tight_bounds()) for k in keys])
        values = [cond.value] if isinstance(cond, Eq) else list(cond.values)
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

    def _fallback(self, cond: Leaf) -> Any:
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


# ------------------------------------------------------------------------------------------ payload indexes
KEYWORD_MAX_MEAN_LEN = 64  # longer strings are text, not keywords: not indexed automatically
KEYWORD_MAX_DISTINCT = 0.5  # nor fields where most values are distinct (ids, free text), from 1,000 values on
_PATH_LIKE = re.compile(r"^[A-Za-z0-9_\-]+(\[\])?(\.[A-Za-z0-9_\-]+(\[\])?)*$")
# Every number condition is a range. A float index holds integers too, but an integer index drops 2.5 and a
# range served from it would miss that point: numbers are always indexed as float, also when declared integer.
INDEX_SCHEMA: dict[str, str] = {"keyword": "keyword", "integer": "float", "float": "float", "bool": "bool"}


def index_key(field: str) -> str | None:
    """The Qdrant key of a declared index field: a plain or dotted path as written, any other name quoted (a
    user's ``_id`` key names its stored key, see ``stored_key``)."""
    if not _PATH_LIKE.match(field):
        return json_path([stored_key(field)])
    head, dot, rest = field.partition(".")
    name = head.removesuffix("[]")
    if stored_key(name) == name:
        return field
    return f"{json_path([stored_key(name)])}{head[len(name) :]}{dot}{rest}"


def check_payload_indexes(indexes: Mapping[str, Any] | None) -> dict[str, PayloadIndexType]:
    """The declared payload indexes (field → type), or InvalidInputError naming the bad entry and the types."""
    allowed = get_args(PayloadIndexType)
    out: dict[str, PayloadIndexType] = {}
    for field, kind in (indexes or {}).items():
        if not isinstance(field, str) or not field:
            raise InvalidInputError(f"payload_indexes: field names are non-empty strings, got {field!r}")
        if kind not in allowed:
            raise InvalidInputError(
                f"payload_indexes: index type {kind!r} of field {field!r} is not one of {list(allowed)} "
                '(e.g. {"genre": "keyword", "year": "integer"})'
            )
        out[field] = kind
    return out


def infer_payload_schema(payloads: Iterable[dict[str, Any]]) -> dict[str, PayloadIndexType]:
    """Index types for the fields these payloads hold: top-level keys and paths through nested objects.

    The most frequent kind wins (keyword, bool, or float for numbers); arrays count their elements. Text-like
    string fields (long or mostly distinct values) are left unindexed.
    """
    stats: dict[str, dict[str, Any]] = {}

    def visit(key: str, value: Any) -> None:
        st = stats.setdefault(key, {"str": 0, "bool": 0, "num": 0, "len": 0, "distinct": set()})
        is_list = isinstance(value, list)
        for x in value if is_list else [value]:
            if isinstance(x, bool):
                st["bool"] += 1
            elif isinstance(x, str):
                st["str"] += 1
                st["len"] += len(x)
                if len(st["distinct"]) <= 100_000:
                    st["distinct"].add(x)
            elif isinstance(x, (int, float)):
                st["num"] += 1
            elif isinstance(x, dict):
                for k, v in x.items():
                    sub = json_path([k])
                    if "." not in k and sub is not None:
                        visit(f"{key}{'[]' if is_list else ''}.{sub}", v)

    for pl in payloads:
        for k, v in pl.items():
            top = json_path([k])
            if k != ID_KEY and top is not None:
                visit(top, v)
    out: dict[str, PayloadIndexType] = {}
    for key, st in stats.items():
        kind, n = max(("keyword", st["str"]), ("bool", st["bool"]), ("float", st["num"]), key=lambda t: t[1])
        if n == 0:
            continue
        if kind == "keyword":
            texty = st["len"] / n > KEYWORD_MAX_MEAN_LEN or (
                n >= 1000 and len(st["distinct"]) / n > KEYWORD_MAX_DISTINCT
            )
            if texty:
                continue
        out[key] = kind  # type: ignore[assignment]
    return out


# ---------------------------------------------------------------------------------------------- top-up
def top_up(
    hits: list[list[Any]], k: int, matches: Callable[[], int], exact: Callable[[list[int]], list[list[Any]]]
) -> list[list[Any]]:
    """A filtered search returns min(k, matching points) hits: re-run the short queries as exact searches."""
    short = [i for i, h in enumerate(hits) if len(h) < k]
    if not short:
        return hits
    need = min(k, matches())
    redo = [i for i in short if len(hits[i]) < need]
    if redo:
        for i, h in zip(redo, exact(redo), strict=True):
            hits[i] = h
    return hits
