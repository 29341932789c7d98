"""Payload filters: one Mongo-style filter language, parsed once into a typed tree that every engine translates.

Build a filter with ``Filter.from_dict(spec)`` (the JSON/Python form; the CLI's short forms parse into it in
``simlookup.filter_args``) or from the node classes (``Filter(And((Eq("genre", "news"), Range("year", gte=2014))))``, or
``Filter.eq(...) & Filter.range(...)``). ``Filter.matches(payload)`` is the plain-Python reference that
FAISS (``retrieval.payload_index``) and Qdrant (``retrieval.stores.qdrant_common``) must equal exactly.

The language::

    {"genre": "news"}                          equality (on an array field: any element equals)
    {"genre": ["news", "forum"]}               any of (same as {"genre": {"$in": [...]}})
    {"year": {"$gte": 2014, "$lt": 2020}}      range; legacy keys gte/gt/lte/lt work too
    {"a.b": 1}                                 nested path (a key that exists literally, dots included, wins)
    {"$or": [{...}, {...}]}, {"$and": [...]}, {"$not": {...}}, {"$nor": [...]}
    operators on a field: $eq $ne $in $nin $gt $gte $lt $lte $exists $not

Semantics (identical on every engine):

- Path resolution. ``"a.b"`` names the top-level key ``"a.b"`` when a point has that key (with any value but
  ``[]``); otherwise it splits on every dot and walks nested objects, stepping into every object element of an
  array on the way (``{"a": [{"b": 1}, {"b": 2}]}`` has values 1 and 2 at ``a.b``). Arrays inside arrays are
  not walked into. Any string is a field name, except one starting with ``$`` (an operator).
- The values at a path are the resolved value, or the elements of a resolved array (one level). A condition
  on an array field matches when any element matches; an element that is itself an array or object never
  equals a scalar and is never in a range.
- Types: a bool never equals a number; numbers compare by value (2 equals 2.0); strings compare exactly. Ranges
  match numbers only (never bools or strings). All bounds of one operator object hold for the same element
  (``{"$gte": 1, "$lt": 5}`` on ``[0, 9]`` does not match).
- Number limits. A number in a filter (a value or a range bound) must lie within ±``MAX_SAFE_INT`` (2**53 - 1),
  else ``FilterError``: beyond it Qdrant (Edge, server) compares through doubles and qdrant-client local mode
  exactly, so the engines would answer differently. Within it every engine gives the exact answer, also for
  payload integers beyond 2**53 (up to ±2**63): a point holding 2**53 + 1 matches ``{"$gt": 2**53 - 1}`` and
  never equals a filter value. Store larger identifiers as strings to select them exactly. Payload integers
  themselves must fit in 64 signed bits: every store refuses a larger one at write time
  (``retrieval.stores.payloads.INT64``).
- Field names. Any string not starting with ``$``, including dots, brackets, quotes and backslashes (on Qdrant a
  key its JSON paths cannot name, one holding ``"`` or ``\\``, is evaluated in Python, with the same answer).
- Null. ``{"f": null}`` (``$eq: null``) matches a point where f is missing, null, ``[]``, or an array holding
  null. ``{"$exists": true}`` matches where f has a value that is not null and not ``[]``; ``$exists: false``
  is its negation (missing, null or ``[]``).
- Negation. ``$ne``, ``$nin``, ``$not``, ``$nor`` are the plain negation of the positive condition, so they
  also match points that lack the field (``{"f": {"$ne": 1}}`` on ``[1, 2]`` does not match: an element equals 1).
- A missing field. A point that lacks the field (or whose path leads to nothing) fails every condition on it
  except ``{"f": null}`` and ``$exists: false``, which it satisfies; under negation the reverse. So a field that
  no point has matches nothing, except through null, ``$exists: false`` or a negation, which match every point.
  ``{}`` matches everything.
- Malformed filters (unknown operator, wrong value type, NaN or infinite bounds, numbers beyond ±``MAX_SAFE_INT``,
  empty ``$in``/``$and``/``$or``, nesting deeper than ``MAX_DEPTH``) raise ``FilterError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from retrieval.errors import FilterError

Scalar: TypeAlias = str | int | float | bool
Value: TypeAlias = Scalar | None
MAX_DEPTH = 32
MAX_SAFE_INT = 2**53 - 1  # the largest magnitude a filter number may have (see "Number limits" above)
RANGE_KEYS = ("gt", "gte", "lt", "lte")
_LEGACY_RANGE = {k: k for k in RANGE_KEYS}
_FIELD_OPS = {"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$not"}
_LOGIC_OPS = {"$and", "$or", "$not", "$nor"}


# ---------------------------------------------------------------------------------------------- the tree
def check_number(path: str, v: Any) -> None:
    """Refuse a filter number that is not finite or lies beyond ±MAX_SAFE_INT (engines disagree there)."""
    if not is_number(v):
        return
    if isinstance(v, float) and not math.isfinite(v):
        raise FilterError(f"filter on {path!r}: value {v!r} is not a finite number")
    if abs(v) > MAX_SAFE_INT:
        shown = repr(v) if len(repr(v)) <= 40 else f"{repr(v)[:16]}... ({len(repr(v))} characters)"
        raise FilterError(
            f"filter on {path!r}: number {shown} is beyond ±{MAX_SAFE_INT} (2**53 - 1), the range in which every "
            "engine compares numbers exactly; store such values as strings to select them exactly"
        )


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition on one payload field (the leaves of a filter)."""

    path: str

    @property
    def field(self) -> str:
        """The field path (old name)."""
        return self.path


@dataclass(frozen=True, slots=True)
class Eq(Condition):
    """Some value at ``path`` equals ``value``; ``value=None``: the field is missing, null or holds null."""

    value: Value

    def __post_init__(self) -> None:
        check_number(self.path, self.value)


@dataclass(frozen=True, slots=True)
class In(Condition):
    """Some value at ``path`` equals one of ``values`` (an OR of ``Eq``)."""

    values: tuple[Value, ...]

    def __post_init__(self) -> None:
        for v in self.values:
            check_number(self.path, v)


@dataclass(frozen=True, slots=True)
class Range(Condition):
    """Some number at ``path`` satisfies every given bound."""

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def __post_init__(self) -> None:
        for v in (self.gt, self.gte, self.lt, self.lte):
            check_number(self.path, v)

    def bounds(self) -> dict[str, float]:
        """The bounds that are set, e.g. ``{"gte": 2014.0}``."""
        return {k: v for k in RANGE_KEYS if (v := getattr(self, k)) is not None}

    def tight_bounds(self) -> dict[str, float]:
        """The same range with at most one bound per side, the tighter one (``gt`` 1 with ``gte`` 3 is ``gte``
        3): engines such as Qdrant's numeric payload index honour only one bound per side."""
        out: dict[str, float] = {}
        gt, gte, lt, lte = self.gt, self.gte, self.lt, self.lte
        if gt is not None and (gte is None or gt >= gte):
            out["gt"] = gt
        elif gte is not None:
            out["gte"] = gte
        if lt is not None and (lte is None or lt <= lte):
            out["lt"] = lt
        elif lte is not None:
            out["lte"] = lte
        return out

    def holds(self, x: float) -> bool:
        """Whether the number x is within every bound."""
        return (
            (self.gt is None or x > self.gt)
            and (self.gte is None or x >= self.gte)
            and (self.lt is None or x < self.lt)
            and (self.lte is None or x <= self.lte)
        )


@dataclass(frozen=True, slots=True)
class Exists(Condition):
    """The field has a value that is not null and not ``[]``."""


@dataclass(frozen=True, slots=True)
class And:
    """Every child holds (no children: always true)."""

    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Some child holds (no children: never true)."""

    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The child does not hold."""

    child: Node


Leaf: TypeAlias = Eq | In | Range | Exists  # every concrete Condition
Node: TypeAlias = Leaf | And | Or | Not
TRUE = And(())
FALSE = Or(())


def all_of(*nodes: Node) -> Node:
    """AND of nodes, flattened and simplified (constants folded)."""
    out: list[Node] = []
    for n in nodes:
        if n == FALSE:
            return FALSE
        if isinstance(n, And):
            out.extend(n.children)
        else:
            out.append(n)
    return out[0] if len(out) == 1 else And(tuple(out))


def any_of(*nodes: Node) -> Node:
    """OR of nodes, flattened and simplified (constants folded)."""
    out: list[Node] = []
    for n in nodes:
        if n == TRUE:
            return TRUE
        if isinstance(n, Or):
            out.extend(n.children)
        else:
            out.append(n)
    return out[0] if len(out) == 1 else Or(tuple(out))


def negate(node: Node) -> Node:
    """NOT node (double negation and constants folded)."""
    if isinstance(node, Not):
        return node.child
    if node == TRUE:
        return FALSE
    if node == FALSE:
        return TRUE
    return Not(node)


def leaves(node: Node) -> Iterator[Leaf]:
    """Every field condition in the tree, depth first."""
    if isinstance(node, (And, Or)):
        for c in node.children:
            yield from leaves(c)
    elif isinstance(node, Not):
        yield from leaves(node.child)
    else:
        yield node


# ------------------------------------------------------------------------------------------ the wrapper
@dataclass(frozen=True, slots=True)
class Filter:
    """A parsed filter: ``root`` is the tree, ``None`` for the empty filter (matches everything)."""

    root: Node | None = None

    def __post_init__(self) -> None:
        if self.root == TRUE:
            object.__setattr__(self, "root", None)

    # -- construction
    @classmethod
    def from_dict(cls, spec: Mapping[str, Any] | Filter | None) -> Filter:
        """Parse the Mongo-style form (see the module docstring); raises FilterError when malformed."""
        if isinstance(spec, Filter):
            return spec
        if spec is None:
            return cls()
        if not isinstance(spec, Mapping):
            raise FilterError(
                f"a filter is a JSON object such as {{'genre': 'news'}} or {{'year': {{'$gte': 2014}}}}, "
                f"not {type(spec).__name__}"
            )
        return cls(_parse_doc(spec, 0))

    @classmethod
    def eq(cls, path: str, value: Value) -> Filter:
        """``path`` equals value."""
        return cls(Eq(path, _check_value(path, value)))

    @classmethod
    def any_of(cls, path: str, values: Sequence[Value]) -> Filter:
        """``path`` equals one of values."""
        return cls(_in(path, values))

    @classmethod
    def range(
        cls,
        path: str,
        gt: float | None = None,
        gte: float | None = None,
        lt: float | None = None,
        lte: float | None = None,
    ) -> Filter:
        """``path`` is a number within the bounds."""
        return cls(_range(path, {"gt": gt, "gte": gte, "lt": lt, "lte": lte}))

    @classmethod
    def exists(cls, path: str) -> Filter:
        """``path`` has a value that is not null and not ``[]``."""
        return cls(Exists(path))

    def __and__(self, other: Filter) -> Filter:
        return Filter(all_of(self.root or TRUE, other.root or TRUE))

    def __or__(self, other: Filter) -> Filter:
        return Filter(any_of(self.root or TRUE, other.root or TRUE))

    def __invert__(self) -> Filter:
        return Filter(negate(self.root or TRUE))

    # -- inspection
    def __bool__(self) -> bool:
        return self.root is not None

    @property
    def conditions(self) -> tuple[Leaf, ...]:
        """Every field condition (leaf) of the filter."""
        return tuple(leaves(self.root)) if self.root is not None else ()

    @property
    def condition_count(self) -> int:
        """How many field conditions the filter holds (what a request limit counts)."""
        return len(self.conditions)

    @property
    def value_count(self) -> int:
        """How many values the filter compares against (an any-of counts each of its values)."""
        return sum(len(c.values) if isinstance(c, In) else 1 for c in self.conditions)

    @property
    def fields(self) -> set[str]:
        """The field paths the filter names."""
        return {c.path for c in self.conditions}

    def to_dict(self) -> dict[str, Any]:
        """The canonical Mongo-style form; ``Filter.from_dict(f.to_dict()) == f``."""
        return {} if self.root is None else _to_doc(self.root)

    def __repr__(self) -> str:
        return f"Filter({json.dumps(self.to_dict(), sort_keys=True)})"

    # -- the reference evaluation
    def matches(self, payload: Mapping[str, Any]) -> bool:
        """Plain-Python evaluation on one payload: the reference every engine must equal."""
        return True if self.root is None else evaluate(self.root, payload)


# --------------------------------------------------------------------------------- reference semantics
def resolve(payload: Mapping[str, Any], path: str) -> list[Any]:
    """The raw values a path selects in one payload (before arrays are opened); [] when it selects nothing."""
    if path in payload:
        v = payload[path]
        if not (isinstance(v, list) and not v) or "." not in path:
            return [v]
    if "." not in path:
        return []
    out: list[Any] = []
    _walk(payload, path.split("."), out)
    return out


def _walk(value: Any, segs: list[str], out: list[Any]) -> None:
    if not segs:
        out.append(value)
        return
    head, rest = segs[0], segs[1:]
    if isinstance(value, Mapping):
        if head in value:
            _walk(value[head], rest, out)
    elif isinstance(value, list):
        for e in value:
            if isinstance(e, Mapping) and head in e:
                _walk(e[head], rest, out)


def flat_values(raw: list[Any]) -> Iterator[Any]:
    """The values conditions compare with: each raw value, or the elements of a raw array (one level)."""
    for r in raw:
        if isinstance(r, list):
            yield from r
        else:
            yield r


def is_empty(raw: list[Any]) -> bool:
    """No raw value, or every raw value is null or ``[]`` (Qdrant's IsEmpty)."""
    return all(r is None or (isinstance(r, list) and not r) for r in raw)


def is_null(raw: list[Any]) -> bool:
    """Some raw value is null or an array holding null (Qdrant's IsNull)."""
    return any(r is None or (isinstance(r, list) and any(e is None for e in r)) for r in raw)


def is_number(x: Any) -> bool:
    """int or float, not bool."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def as_double(x: int | float) -> float:
    """A JSON number as the IEEE double every engine compares."""
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def scalar_equal(x: Any, v: Scalar) -> bool:
    """One payload value equals one filter value: same kind (string, bool, number) and equal."""
    if isinstance(v, bool):
        return isinstance(x, bool) and x is v
    if isinstance(v, str):
        return isinstance(x, str) and x == v
    return is_number(x) and as_double(x) == as_double(v)


def holds_path(payload: Mapping[str, Any], path: str) -> bool:
    """Whether a payload holds ``path`` with a value or null (not missing, not ``[]``): what ``has_field`` asks
    of every point (``$exists: true`` or a null)."""
    raw = resolve(payload, path)
    return not is_empty(raw) or is_null(raw)


def _eq_raw(raw: list[Any], v: Value) -> bool:
    if v is None:
        return is_empty(raw) or is_null(raw)
    return any(scalar_equal(x, v) for x in flat_values(raw))


def evaluate(node: Node, payload: Mapping[str, Any]) -> bool:
    """Whether node holds for payload (the reference semantics)."""
    if isinstance(node, And):
        return all(evaluate(c, payload) for c in node.children)
    if isinstance(node, Or):
        return any(evaluate(c, payload) for c in node.children)
    if isinstance(node, Not):
        return not evaluate(node.child, payload)
    raw = resolve(payload, node.path)
    if isinstance(node, Eq):
        return _eq_raw(raw, node.value)
    if isinstance(node, In):
        return any(_eq_raw(raw, v) for v in node.values)
    if isinstance(node, Range):
        return any(is_number(x) and node.holds(as_double(x)) for x in flat_values(raw))
    if isinstance(node, Exists):
        return not is_empty(raw)
    raise TypeError(f"not a filter node: {node!r}")


# ------------------------------------------------------------------------------------------- parsing
def _parse_doc(doc: Mapping[str, Any], depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise FilterError(f"filter is nested deeper than {MAX_DEPTH} levels")
    parts: list[Node] = []
    for key, val in doc.items():
        if not isinstance(key, str):
            raise FilterError(f"filter keys are strings, got {key!r}")
        if key.startswith("$"):
            parts.append(_parse_logic(key, val, depth))
        else:
            parts.append(_parse_field(key, val, depth))
    return all_of(*parts) if parts else TRUE


def _parse_logic(op: str, val: Any, depth: int) -> Node:
    if op not in _LOGIC_OPS:
        hint = " (field operators go inside a field: {'year': {'$gte': 2014}})" if op in _FIELD_OPS else ""
        raise FilterError(f"unknown filter operator {op!r}{hint}; top-level operators are {sorted(_LOGIC_OPS)}")
    if op == "$not":
        if not isinstance(val, Mapping):
            raise FilterError("'$not' takes a filter object, e.g. {'$not': {'genre': 'news'}}")
        return negate(_parse_doc(val, depth + 1))
    if not isinstance(val, list) or not val:
        raise FilterError(f"{op!r} takes a non-empty list of filter objects")
    subs = []
    for sub in val:
        if not isinstance(sub, Mapping):
            raise FilterError(f"{op!r} takes a list of filter objects, got an element {sub!r}")
        subs.append(_parse_doc(sub, depth + 1))
    if op == "$and":
        return all_of(*subs)
    if op == "$or":
        return any_of(*subs)
    return negate(any_of(*subs))  # $nor


def _parse_field(path: str, val: Any, depth: int) -> Node:
    if isinstance(val, Mapping):
        return _parse_ops(path, val, depth)
    if isinstance(val, (list, tuple)):
        return _in(path, val)
    return Eq(path, _check_value(path, val))


def _parse_ops(path: str, ops: Mapping[str, Any], depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise FilterError(f"filter is nested deeper than {MAX_DEPTH} levels")
    if not ops:
        raise FilterError(f"filter on {path!r}: an empty operator object; use a value or e.g. {{'$eq': ...}}")
    unknown = [k for k in ops if not (k in _FIELD_OPS or k in _LEGACY_RANGE)]
    if unknown:
        if all(not str(k).startswith("$") for k in unknown):
            raise FilterError(
                f"filter on {path!r}: {sorted(map(str, unknown))} are not operators; to filter on a nested "
                f"field write the dotted path, e.g. {{'{path}.{unknown[0]}': ...}}; operators are {sorted(_FIELD_OPS)}"
            )
        raise FilterError(
            f"filter on {path!r}: unknown operator(s) {sorted(map(str, unknown))}; use {sorted(_FIELD_OPS)}"
        )
    parts: list[Node] = []
    bounds: dict[str, Any] = {}
    for op, v in ops.items():
        name = op.lstrip("$")
        if name in RANGE_KEYS:
            if name in bounds:
                raise FilterError(f"filter on {path!r}: bound {name!r} given twice")
            bounds[name] = v
        elif op == "$eq":
            parts.append(Eq(path, _check_value(path, v)))
        elif op == "$ne":
            parts.append(negate(Eq(path, _check_value(path, v))))
        elif op == "$in":
            parts.append(_in(path, v))
        elif op == "$nin":
            parts.append(negate(_in(path, v)))
        elif op == "$exists":
            if not isinstance(v, bool):
                raise FilterError(f"filter on {path!r}: '$exists' takes true or false, got {v!r}")
            parts.append(Exists(path) if v else negate(Exists(path)))
        elif op == "$not":
            if not isinstance(v, Mapping):
                raise FilterError(f"filter on {path!r}: '$not' takes an operator object, e.g. {{'$not': {{'$gt': 5}}}}")
            parts.append(negate(_parse_ops(path, v, depth + 1)))
    if bounds:
        parts.insert(0, _range(path, bounds))
    return all_of(*parts)


def _check_value(path: str, v: Any) -> Value:
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise FilterError(f"filter on {path!r}: value {v!r} is not a finite number")
        return v
    raise FilterError(
        f"filter on {path!r}: value {v!r} is not a string, number, boolean or null "
        "(a list means any of; to filter on a nested field write the dotted path)"
    )


def _in(path: str, values: Any) -> Node:
    if not isinstance(values, (list, tuple)):
        raise FilterError(f"filter on {path!r}: '$in' / '$nin' take a list of values, got {values!r}")
    if not values:
        raise FilterError(f"filter on {path!r}: any-of ('$in', '$nin' or a list) needs at least one value")
    # duplicates dropped in one pass (keyed by type too: True, 1 and 1.0 stay distinct values)
    seen: dict[tuple[type, Value], Value] = {}
    for v in values:
        cv = _check_value(path, v)
        seen.setdefault((type(cv), cv), cv)
    vals = list(seen.values())
    return Eq(path, vals[0]) if len(vals) == 1 else In(path, tuple(vals))


def _range(path: str, bounds: Mapping[str, Any]) -> Node:
    clean: dict[str, float] = {}
    for k, v in bounds.items():
        if v is None:
            continue
        if not is_number(v):
            raise FilterError(f"filter on {path!r}: range bound {k!r} must be a number, got {v!r}")
        if isinstance(v, int):
            check_number(path, v)  # before the double conversion, so the message shows the number as written
        f = as_double(v)
        if not math.isfinite(f):
            raise FilterError(f"filter on {path!r}: range bound {k!r} must be a finite number, got {v!r}")
        clean[k] = f
    if not clean:
        raise FilterError(f"filter on {path!r}: a range needs gte, gt, lte or lt")
    return Range(path, **clean)


def _to_doc(node: Node) -> dict[str, Any]:
    if isinstance(node, And):
        return {"$and": [_to_doc(c) for c in node.children]} if node.children else {}
    if isinstance(node, Or):
        return {"$or": [_to_doc(c) for c in node.children]} if node.children else {"$not": {}}
    if isinstance(node, Not):
        return {"$not": _to_doc(node.child)}
    if isinstance(node, Eq):
        return {node.path: {"$eq": node.value}}
    if isinstance(node, In):
        return {node.path: {"$in": list(node.values)}}
    if isinstance(node, Range):
        return {node.path: {f"${k}": v for k, v in node.bounds().items()}}
    return {node.path: {"$exists": True}}
