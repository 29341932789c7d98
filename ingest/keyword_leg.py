"""The keyword leg an ingest writes: BM25 on the texts of a text collection (``retrieval.keyword``), unless
``SIMLOOKUP_KEYWORD__ENABLED=false``. Its average document length is measured on the source's texts before any
point is written, so every engine weighs each document by the same number from the first write on (an ``--append``
run keeps the collection's own)."""

from __future__ import annotations

from typing import Any

from ingest.rows import text_of
from retrieval.collection import CollectionManifest
from retrieval.keyword.bm25 import average_length
from retrieval.keyword.spec import KeywordSpec
from retrieval.keyword.tokenize import tokenize
from retrieval.settings import Settings
from retrieval.stores.manifest import now_iso

_BATCH = 10_000


def keyword_spec(
    settings: Settings, ds: Any, modality: str, old: CollectionManifest | None, append: bool
) -> KeywordSpec | None:
    """The keyword leg of the collection this ingest writes (None: none, for an image corpus, a source without a
    text column or without a single token, or when the setting turns it off)."""
    ks = settings.keyword
    if not ks.enabled or modality != "text" or "text" not in ds.column_names:
        return None
    if append and old is not None and old.keyword is not None:
        return old.keyword
    lengths: list[int] = []
    column = ds.select_columns(["text"]) if hasattr(ds, "select_columns") else ds
    for batch in column.iter(batch_size=_BATCH):
        lengths += [len(tokenize(t)) for v in batch["text"] if (t := text_of(v)) is not None]
    avgdl = average_length(lengths)
    if avgdl <= 0:
        return None
    return KeywordSpec(k1=ks.k1, b=ks.b, avgdl=avgdl, built=now_iso())
