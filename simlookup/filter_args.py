"""The command line's filter forms (``--filter field=value`` ...), parsed into the one filter language.

``field=value``, ``field=a,b`` (any of), ``field!=value``, ``field>=3``, ``field<10``, or a JSON object; repeated
``--filter`` options are ANDed. Values that read as a number, ``true``/``false`` or ``null`` are taken as one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from retrieval.errors import FilterError
from retrieval.filters import Filter, Value

_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_CLI_RE = re.compile(r"^([^=<>!]+)(>=|<=|!=|=|>|<)(.*)$", re.S)
_CLI_RANGE = {">=": "$gte", "<=": "$lte", ">": "$gt", "<": "$lt"}


def coerce(text: str) -> Value:
    """A command-line value: integer, then finite decimal number, then true/false/null, else the string itself."""
    if _INT_RE.match(text):
        return int(text)
    if _FLOAT_RE.match(text):
        return float(text)
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "null":
        return None
    return text


def parse_filter_args(args: Sequence[str] | None) -> Filter:
    """CLI filters, ANDed: ``field=value``, ``field=a,b`` (any of), ``field!=value``, ``field>=3``, ``field<10``,
    or a JSON object (``'{"$or": [{"a": 1}, {"b": 2}]}'``)."""
    parts: list[dict[str, Any]] = []
    for arg in args or ():
        if arg.lstrip().startswith("{"):
            try:
                spec = json.loads(arg)
            except json.JSONDecodeError as exc:
                raise FilterError(f"filter {arg!r} is not valid JSON: {exc.msg} at column {exc.colno}") from None
            Filter.from_dict(spec)  # its own errors, named for this argument
            parts.append(spec)
            continue
        m = _CLI_RE.match(arg)
        if not m or not m.group(3) or not m.group(1).strip():
            raise FilterError(
                f"cannot parse filter {arg!r}: use field=value, field=a,b, field!=value, field>=n, field<n "
                "or a JSON object"
            )
        key, op, raw = m.group(1).strip(), m.group(2), m.group(3)
        if op in ("=", "!=") and raw[:1] in ("=", "<", ">"):
            raise FilterError(
                f"cannot parse filter {arg!r}: {op}{raw[0]} is not an operator (use =, !=, >=, <=, > or <; "
                "a value that starts with one of =<> goes in the JSON form)"
            )
        if op in ("=", "!="):
            vals = [coerce(p) for p in raw.split(",") if p != ""]
            if not vals:
                raise FilterError(f"cannot parse filter {arg!r}: no value after {op!r}")
            parts.append({key: {"$in" if op == "=" else "$nin": vals}})
        else:
            if not _FLOAT_RE.match(raw.strip()):
                raise FilterError(f"filter {arg!r}: a range bound must be a finite number, got {raw!r}")
            parts.append({key: {_CLI_RANGE[op]: float(raw)}})
    if not parts:
        return Filter()
    return Filter.from_dict(parts[0] if len(parts) == 1 else {"$and": parts})
