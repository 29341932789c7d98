"""Payload filters: equality, any-of and numeric ranges on payload fields, combined with AND.

One small model that every backend translates: FAISS to SQL over its payload sidecar, Qdrant to
``Filter(must=[FieldCondition...])``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from retrieval.errors import FilterError

FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
Scalar = str | int | float | bool
_RANGE_OPS = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}


@dataclass(frozen=True)
class Condition:
    """One condition on one payload field."""

    field: str
    op: Literal["eq", "any", "range"]
    value: Scalar | None = None
    values: tuple[Scalar, ...] = ()
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None

    def __post_init__(self) -> None:
        if not FIELD_RE.match(self.field):
            raise FilterError(f"filter field {self.field!r} is not a plain payload field name")
        if self.op == "any" and not self.values:
            raise FilterError(f"filter on {self.field!r}: any-of needs at least one value")
        if self.op == "range" and all(v is None for v in (self.gte, self.gt, self.lte, self.lt)):
            raise FilterError(f"filter on {self.field!r}: a range needs gte, gt, lte or lt")


@dataclass(frozen=True)
class Filter:
    """All conditions must hold."""

    conditions: tuple[Condition, ...] = field(default_factory=tuple)

    @property
    def fields(self) -> set[str]:
        return {c.field for c in self.conditions}

    def __bool__(self) -> bool:
        return bool(self.conditions)

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """Plain-Python evaluation of the filter on one payload (the reference every engine must equal)."""
        return all(_cond_matches(c, payload) for c in self.conditions)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any] | None) -> Filter:
        """``{"genre": "news", "split": ["dev", "test"], "year": {"gte": 2012}}`` → Filter."""
        if not spec:
            return cls()
        if not isinstance(spec, Mapping):
            raise FilterError("a filter is a JSON object of field → value, list of values, or range")
        conds: list[Condition] = []
        for key, val in spec.items():
            if isinstance(val, Mapping):
                unknown = set(val) - {"gte", "gt", "lte", "lt"}
                if unknown:
                    raise FilterError(f"filter on {key!r}: unknown range keys {sorted(unknown)}")
                try:
                    bounds = {k: float(v) for k, v in val.items()}
                except (TypeError, ValueError):
                    raise FilterError(f"filter on {key!r}: range bounds must be numbers") from None
                conds.append(Condition(key, "range", **bounds))
            elif isinstance(val, Sequence) and not isinstance(val, str):
                conds.append(Condition(key, "any", values=tuple(_scalar(key, v) for v in val)))
            else:
                conds.append(Condition(key, "eq", value=_scalar(key, val)))
        return cls(tuple(conds))


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _cond_matches(c: Condition, payload: Mapping[str, Any]) -> bool:
    if c.field not in payload:
        return False
    raw = payload[c.field]
    vals = raw if isinstance(raw, list) else [raw]
    for v in vals:
        if c.op == "eq" and _eq(v, c.value):
            return True
        if c.op == "any" and any(_eq(v, x) for x in c.values):
            return True
        if c.op == "range" and isinstance(v, (int, float)) and not isinstance(v, bool):
            if all(
                b is None or f(v, b)
                for b, f in (
                    (c.gte, lambda x, y: x >= y),
                    (c.gt, lambda x, y: x > y),
                    (c.lte, lambda x, y: x <= y),
                    (c.lt, lambda x, y: x < y),
                )
            ):
                return True
    return False


def _scalar(key: str, v: Any) -> Scalar:
    if isinstance(v, (str, int, float, bool)):
        return v
    raise FilterError(f"filter on {key!r}: value {v!r} is not a string, number or boolean")


def coerce(text: str) -> Scalar:
    """A command-line value: int, then float, then true/false, else the string itself."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_filter_args(args: Sequence[str] | None) -> Filter:
    """Parse CLI filters: ``field=value``, ``field=a,b`` (any of), ``field>=3``, ``field<10``."""
    conds: list[Condition] = []
    for arg in args or ():
        m = re.match(r"^([^=<>!]+)(>=|<=|=|>|<)(.*)$", arg)
        if not m or not m.group(3):
            raise FilterError(f"cannot parse filter {arg!r}: use field=value, field=a,b, field>=n or field<n")
        key, op, raw = m.group(1).strip(), m.group(2), m.group(3)
        if op == "=":
            parts = [p for p in raw.split(",") if p != ""]
            if len(parts) > 1:
                conds.append(Condition(key, "any", values=tuple(coerce(p) for p in parts)))
            else:
                conds.append(Condition(key, "eq", value=coerce(raw)))
        else:
            try:
                bound = float(raw)
            except ValueError:
                raise FilterError(f"filter {arg!r}: a range bound must be a number") from None
            conds.append(Condition(key, "range", **{_RANGE_OPS[op]: bound}))
    return Filter(tuple(conds))
