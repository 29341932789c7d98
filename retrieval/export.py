"""``simlookup export``: a collection's points to one parquet file that ``simlookup ingest`` takes back.

One row per point: ``id`` (string), ``vector`` (list of float32, as stored: unit length under cosine) and
``payload`` (JSON text). The file's key-value metadata holds the collection manifest (``simlookup.manifest``) and
what was exported (``simlookup.export``: index, vector space, dimension, metric, fingerprint, model, count).
``simlookup ingest FILE --vector-column vector --payload-column payload --id-column id`` makes the same points
(the metric comes from the file). Points are read through the store API in batches (``ids()``, then ``fetch``
per batch), from the flat index when there is one, and written to a temporary file renamed into place at the
end: a refused or failed export leaves nothing behind, and an existing file is replaced only with ``force``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.collection import Collection
from retrieval.errors import InvalidInputError, StoreError
from retrieval.settings import Settings
from retrieval.stores import QDRANT_INDEX
from retrieval.stores.manifest import atomic_write

EXPORT_MANIFEST_KEY = b"simlookup.manifest"
EXPORT_INFO_KEY = b"simlookup.export"
# FAISS kinds share one point store: exact vectors
EXPORT_ORDER = ("flat", "hnsw", "ivf", "ivfpq", "ivf_sq8", "hnsw_sq8", QDRANT_INDEX)


@dataclass
class ExportSummary:
    """What ``export_collection`` wrote (``simlookup export --json`` prints it)."""

    name: str
    path: str
    index: str
    target: str
    count: int = 0
    dim: int = 0
    metric: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_collection(
    settings: Settings,
    name: str,
    path: Path,
    *,
    force: bool = False,
    index: str | None = None,
    target: str | None = None,
    batch_size: int = 1024,
) -> ExportSummary:
    """Write every point of one vector space of collection ``name`` to the parquet file ``path``.

    Refused before anything is written: an unknown collection, index or space, a path that exists (unless
    ``force``), a path whose folder does not exist or that does not end in ``.parquet``.
    """
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    t0 = time.perf_counter()
    path = Path(path).expanduser()
    if path.suffix.lower() != ".parquet":
        raise InvalidInputError(f"export path {path}: name a .parquet file")
    if path.is_dir():
        raise InvalidInputError(f"export path {path} is a folder: name a .parquet file")
    if path.exists() and not force:
        raise InvalidInputError(f"{path} exists: choose another path, or pass --force to replace it")
    if not path.parent.is_dir():
        raise InvalidInputError(f"export path {path}: the folder {path.parent} does not exist")
    if batch_size < 1:
        raise InvalidInputError("the export batch size must be ≥ 1")
    with Collection(settings, name, read_only=True) as coll:
        m = coll.manifest
        target = target or coll.default_target("text")
        space = coll.space(target)
        kind = index or next((k for k in EXPORT_ORDER if k in m.indexes), None)
        if kind is None:
            raise InvalidInputError(f"collection {name!r} has no index to export from (its manifest lists none)")
        st = coll.store(kind, target)
        summary = ExportSummary(name, str(path), kind, target, dim=space.dim, metric=space.metric)
        summary.warnings = coll.warnings()
        ids = sorted(st.ids())
        info = {
            "format": 1,
            "name": name,
            "index": kind,
            "target": target,
            "dim": space.dim,
            "metric": space.metric,
            "fingerprint": space.fingerprint,
            "model": space.model,
            "encoder": space.encoder,
            "count": len(ids),
        }
        schema = pa.schema(
            [("id", pa.string()), ("vector", pa.list_(pa.float32())), ("payload", pa.string())],
            metadata={EXPORT_MANIFEST_KEY: m.model_dump_json().encode(), EXPORT_INFO_KEY: json.dumps(info).encode()},
        )

        def write(tmp: str) -> None:
            with pq.ParquetWriter(tmp, schema) as w:
                for i in range(0, len(ids), batch_size):
                    got = st.fetch(ids[i : i + batch_size])
                    out_ids = [p for p in ids[i : i + batch_size] if p in got]  # a point deleted meanwhile is left out
                    vecs: list[np.ndarray] = []
                    for p in out_ids:
                        v = got[p][0]
                        if v is None:
                            raise StoreError(
                                f"the {kind} index of {name!r} keeps no vectors to export: pass --index with another "
                                f"of {m.indexes}"
                            )
                        vecs.append(np.asarray(v, dtype=np.float32).reshape(-1))
                    flat = np.concatenate(vecs) if vecs else np.zeros(0, np.float32)
                    offsets = np.arange(0, len(vecs) + 1, dtype=np.int32) * space.dim
                    table = pa.table(
                        {
                            "id": pa.array(out_ids, pa.string()),
                            "vector": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float32())),
                            "payload": pa.array([json.dumps(got[p][1], ensure_ascii=False) for p in out_ids]),
                        },
                        schema=schema,
                    )
                    w.write_table(table)
                    summary.count += len(out_ids)

        atomic_write(path, write)
    summary.seconds = time.perf_counter() - t0
    return summary
