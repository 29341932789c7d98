"""Payloads as a store keeps them: their canonical JSON text, and copies no caller can reach the store's own
payload through (shallow for flat payloads, a JSON round trip for nested ones)."""

from __future__ import annotations

import json
from typing import Any

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
