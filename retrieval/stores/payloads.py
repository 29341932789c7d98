"""Payloads as a store keeps them: their canonical JSON text, copies no caller can reach the store's own
payload through (shallow for flat payloads, a JSON round trip for nested ones), and the integer rule every
engine shares (``INT64``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from retrieval.errors import InvalidInputError
from retrieval.payload_index import JSON_SCALARS

Payload = dict[str, Any]

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical(payload: Payload) -> str:
    """The JSON text a payload is stored as (sorted keys: equal payloads give equal text)."""
    return _CANONICAL.encode(payload)


def is_flat(payload: Payload) -> bool:
    """Every value a JSON scalar (exact types, no Python loop): a shallow copy shares nothing mutable."""
    return JSON_SCALARS.issuperset(map(type, payload.values()))


def payload_copy(payload: Payload) -> Payload:
    """A copy no caller can reach the store's payload through: shallow for scalar values, a JSON round trip
    when a value is a list or an object (nested values would otherwise be shared)."""
    if is_flat(payload):
        return dict(payload)
    copy: Payload = json.loads(_CANONICAL.encode(payload))
    return copy


def own_copy(payload: Payload, text: str) -> tuple[Payload, bool]:
    """The store's own copy of a payload, equal to ``json.loads(text)``, and whether it is flat (every value a
    JSON scalar): a shallow copy when every key is a string and every value a JSON scalar (exact types), the
    JSON round trip otherwise."""
    if is_flat(payload) and all(type(k) is str for k in payload):
        return dict(payload), True
    copy: Payload = json.loads(text)
    return copy, is_flat(copy)


# Payload integers must fit in 64 signed bits: beyond, Qdrant keeps some as unsigned 64-bit integers and turns the
# rest into doubles (2**64 came back as 1.8446744073709552e+19) while FAISS keeps every integer exactly, so the
# engines would store, return and compare different numbers. Refused at write time on every engine.
INT64 = (-(2**63), 2**63 - 1)
_LONG_DIGITS = re.compile(r"[0-9]{19}")  # an integer beyond 64 bits has at least 19 digits (2**63 has 19)


def _big_int_at(value: Any, path: str) -> tuple[str, int] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return (path, value) if not INT64[0] <= value <= INT64[1] else None
    if isinstance(value, dict):
        for k, v in value.items():
            hit = _big_int_at(v, f"{path}.{k}" if path else str(k))
            if hit is not None:
                return hit
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            hit = _big_int_at(v, f"{path}[{i}]")
            if hit is not None:
                return hit
    return None


def int64_problem(payload: Payload) -> str | None:
    """Why a payload cannot be stored as it is (an integer beyond 64 bits, named by its field), or None."""
    hit = _big_int_at(payload, "")
    if hit is None:
        return None
    path, value = hit
    digits = str(value)
    shown = digits if len(digits) <= 40 else f"{digits[:20]}... ({len(digits)} digits)"
    return (
        f"payload field {path!r} holds the integer {shown}, beyond the 64-bit range {INT64[0]} to {INT64[1]} in "
        "which every engine stores integers exactly (Qdrant turns larger ones into doubles): store it as a string "
        "(or as a float if its precision does not matter)"
    )


def check_int64(payloads: Iterable[Payload], encoded: str | None = None) -> None:
    """Refuse (InvalidInputError) a batch holding an integer beyond 64 bits. ``encoded``: the batch's JSON text
    when the caller has it: without a run of 19 digits in it no payload can hold one, and nothing is walked."""
    if encoded is not None and _LONG_DIGITS.search(encoded) is None:
        return
    for p in payloads:
        why = int64_problem(p)
        if why is not None:
            raise InvalidInputError(why)
