"""What the Qdrant adapters share: point ids, filter translation, payload indexes, store metadata."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

from retrieval.errors import InvalidInputError
from retrieval.filters import Filter

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


def to_qdrant_filter(flt: Filter | None, m: Any, edge: bool = False) -> Any:
    """Translate a Filter into a qdrant Filter built from module m (qdrant_client.models or qdrant_edge)."""
    if flt is None:
        return None
    must = []
    for c in flt.conditions:
        if c.op == "eq":
            cond = m.FieldCondition(key=c.field, match=m.MatchValue(value=c.value))
        elif c.op == "any":
            cond = m.FieldCondition(key=c.field, match=m.MatchAny(any=list(c.values)))
        else:
            rng_cls = m.RangeFloat if edge else m.Range
            cond = m.FieldCondition(key=c.field, range=rng_cls(gte=c.gte, gt=c.gt, lte=c.lte, lt=c.lt))
        must.append(cond)
    return m.Filter(must=must)


def field_exists_filter(field: str, m: Any, edge: bool = False) -> Any:
    """A filter matching points whose payload has this field."""
    cond = m.IsEmptyCondition(key=field) if edge else m.IsEmptyCondition(is_empty=m.PayloadField(key=field))
    return m.Filter(must_not=[cond])


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
