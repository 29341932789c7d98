"""Rows → points: the text or image each vector space embeds, the payload, and the reason a bad row is rejected."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ingest.cache import Shard
from ingest.corpora.files import ORIGINAL_ID, SOURCE_PAYLOAD
from ingest.corpora.vectors import PAYLOAD, VECTOR, payload_of, vector_of
from retrieval.collection import VectorSpace
from retrieval.collection_manifest import EXTERNAL
from retrieval.errors import InvalidInputError
from retrieval.settings import Settings
from retrieval.stores.payloads import check_int64, int64_problem


def text_of(value: Any) -> str | None:
    """The text to embed from a cell: strings as they are, finite numbers as their string form, else None."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return str(value)
    return None


def clean_payload(row: dict[str, Any], drop: set[str]) -> dict[str, Any]:
    """Row → JSON payload: drops the id and raw image, turns NaN floats into None. A file row's own payload
    fields (``SOURCE_PAYLOAD``, as the file holds them) replace their table-typed columns."""
    out: dict[str, Any] = {}
    src = row.get(SOURCE_PAYLOAD)
    if src is not None:
        kept = {k: row[k] for k in ("text", ORIGINAL_ID) if k in row}
        row = {**kept, **json.loads(src)}
    for k, v in row.items():
        if k in drop:
            continue
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        if isinstance(v, (str, int, float, bool)) or v is None or isinstance(v, (list, dict)):
            out[k] = v
        else:
            out[k] = str(v)
    return out


def encode_rows(
    space: VectorSpace, encoder: Any, rows: list[dict[str, Any]], batch_size: int, max_pixels: int
) -> tuple[list[str], np.ndarray, list[dict[str, Any]], list[dict[str, str]]]:
    """Encode one shard's rows for a space; returns ids, vectors, payloads and rejects (id, space, reason)."""
    ids: list[str] = []
    inputs: list[Any] = []
    payloads: list[dict[str, Any]] = []
    rejects: list[dict[str, str]] = []
    for row in rows:
        rid = str(row["id"])
        value = row.get(space.column)
        if space.name == "image":
            from retrieval.encoders.images import load_image

            try:
                img = load_image(value, max_pixels) if value is not None else None
            except InvalidInputError as exc:
                rejects.append({"id": rid, "space": space.name, "reason": str(exc)})
                continue
            if img is None:
                rejects.append({"id": rid, "space": space.name, "reason": "no image"})
                continue
            pl = clean_payload(row, {"id", "image"})
            pl["width"], pl["height"] = img.size
            why = int64_problem(pl)  # an integer beyond 64 bits: every store refuses it (retrieval.stores.payloads)
            if why is not None:
                rejects.append({"id": rid, "space": space.name, "reason": why})
                continue
            inputs.append(img)
        else:
            text = text_of(value)
            if text is None:
                if space.name == "caption":
                    continue  # images without a caption simply have no caption vector
                what = "empty or missing text" if value is None or isinstance(value, str) else f"no text ({value!r})"
                rejects.append({"id": rid, "space": space.name, "reason": what})
                continue
            pl = clean_payload(row, {"id", "image"})
            pl[space.column] = text  # a numeric cell is embedded, and returned, as its string form
            why = int64_problem(pl)  # an integer beyond 64 bits: every store refuses it (retrieval.stores.payloads)
            if why is not None:
                rejects.append({"id": rid, "space": space.name, "reason": why})
                continue
            inputs.append(text)
        ids.append(rid)
        payloads.append(pl)
    if not inputs:
        return [], np.zeros((0, getattr(encoder, "dim", 0)), np.float32), [], rejects
    if space.name == "image":
        vecs = encoder.encode_image(inputs, batch_size=batch_size)
    else:
        vecs = encoder.encode_text(inputs, batch_size=batch_size)
    finite = np.isfinite(vecs).all(axis=1) & (np.linalg.norm(vecs, axis=1) > 0)
    if not finite.all():
        for i in np.where(~finite)[0]:
            rejects.append({"id": ids[i], "space": space.name, "reason": "NaN, inf or zero embedding"})
        keep = np.where(finite)[0]
        ids = [ids[i] for i in keep]
        payloads = [payloads[i] for i in keep]
        vecs = vecs[keep]
    return ids, vecs.astype(np.float32), payloads, rejects


def vector_rows(
    space: VectorSpace, rows: list[dict[str, Any]]
) -> tuple[list[str], np.ndarray, list[dict[str, Any]], list[dict[str, str]]]:
    """Rows that carry their own vector (an external space): each vector checked as it is, a bad one rejected
    with its reason; the payload is the payload column's object, else the other columns."""
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    payloads: list[dict[str, Any]] = []
    rejects: list[dict[str, str]] = []
    for row in rows:
        rid = str(row["id"])
        vec, why = vector_of(row.get(VECTOR), space.dim, space.metric == "cosine")
        pl: dict[str, Any] | None = None
        if why is None:
            pl, why = payload_of(row[PAYLOAD]) if PAYLOAD in row else (clean_payload(row, {"id", VECTOR}), None)
        if why is None and pl is not None:
            why = int64_problem(pl)
        if why is not None or pl is None or vec is None:
            rejects.append({"id": rid, "space": space.name, "reason": why or "no vector"})
            continue
        ids.append(rid)
        vecs.append(vec)
        payloads.append(pl)
    arr = np.stack(vecs) if vecs else np.zeros((0, space.dim), np.float32)
    return ids, arr.astype(np.float32, copy=False), payloads, rejects


def reject_unstorable(shard: Shard, space: str) -> Shard:
    """The shard without the points whose payload no store takes (an integer beyond 64 bits), each rejected with
    its reason: shards cached before that rule still hold such rows (``encode_rows`` rejects them now)."""
    try:
        check_int64(shard.payloads, json.dumps(shard.payloads))
        return shard
    except (InvalidInputError, TypeError, ValueError):
        pass
    keep: list[int] = []
    rejects = list(shard.rejects)
    for i, pl in enumerate(shard.payloads):
        why = int64_problem(pl)
        if why is None:
            keep.append(i)
        else:
            rejects.append({"id": shard.ids[i], "space": space, "reason": why})
    return Shard(
        shard.start,
        shard.end,
        [shard.ids[i] for i in keep],
        shard.vectors[keep],
        [shard.payloads[i] for i in keep],
        rejects,
    )


def encode_shard(settings: Settings, space: VectorSpace, encoder: Any, rows: list[dict[str, Any]], start: int) -> Shard:
    """Encode rows [start, start + len(rows)) of one space into a shard (both engines call this); an external
    space takes each row's own vector."""
    if space.encoder == EXTERNAL:
        ids, vecs, pls, rej = vector_rows(space, rows)
        return Shard(start, start + len(rows), ids, vecs, pls, rej)
    ids, vecs, pls, rej = encode_rows(space, encoder, rows, settings.batch_size, settings.clip.max_image_pixels)
    return Shard(start, start + len(rows), ids, vecs, pls, rej)
