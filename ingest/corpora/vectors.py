"""Vectors a user already has: a ``.npy`` array, or a parquet file / Hugging Face dataset with a vector column.

The rows become a table with a string ``id``, the vector (``VECTOR``), an optional payload object (``PAYLOAD``)
and otherwise the payload columns; ``ingest.rows`` turns each row into a point or a reject, as for text. The
dimension is ``dim`` when given, else the one length every vector of the column has: a column of several lengths
is refused before anything is written (``--dim N`` keeps the rows of length N and rejects the others one by one).
A ``.npy`` holds a 2-d numeric array; its ids are the row numbers as strings (``"0"``, ``"1"``, ...) unless
``id_column`` names a text file with one id per line, and ``payload_column`` may name a JSONL file with one
object per row.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ingest.corpora.base import CorpusError, CorpusSpec, file_digest
from ingest.corpora.files import assign_ids, text_lines
from retrieval.export import EXPORT_INFO_KEY

VECTOR = "__simlookup_vector__"  # the vector column, renamed (not a payload key)
PAYLOAD = "__simlookup_payload__"  # the payload column, renamed: one JSON object (text or struct) per row
VECTOR_SUFFIXES = (".npy", ".parquet")


class VectorCorpus:
    """Rows that carry their own vector: ``.npy``, ``.parquet`` or ``hf:<dataset>[:<config>][:<split>]``."""

    def __init__(
        self,
        source: str,
        vector_column: str | None,
        id_column: str = "id",
        payload_column: str | None = None,
        dim: int | None = None,
        metric: str | None = None,
    ) -> None:
        """``metric``: None takes the one a file written by ``simlookup export`` records, else cosine."""
        self.source = source
        self.id_column = id_column
        self.payload_column = payload_column
        self.want_dim = dim
        self.dim: int | None = None  # known once loaded
        self.lengths: Counter[int] = Counter()
        if source.startswith("hf:"):
            from ingest.corpora.hf import HFCorpus

            self.hf: HFCorpus | None = HFCorpus(source, id_column=id_column)
            self.path: Path | None = None
            name = self.hf.spec.name
        else:
            self.hf = None
            self.path = Path(source).expanduser()
            if not self.path.is_file():
                raise CorpusError(f"vector file {self.path} does not exist")
            if self.path.suffix.lower() not in VECTOR_SUFFIXES:
                raise CorpusError(
                    f"vector file {self.path}: unsupported format {self.path.suffix!r}; use .npy, .parquet or hf:..."
                )
            name = self.path.stem
        self.npy = self.path is not None and self.path.suffix.lower() == ".npy"
        if not self.npy and not vector_column:
            raise CorpusError(f"{source}: name the column that holds the vectors with --vector-column")
        self.vector_column = vector_column or ""
        self.spec = CorpusSpec(name=name, modality="text", text_column=None, description=f"vectors from {source}")
        self.metric = metric or self.recorded_metric() or "cosine"  # decides the rejects (a zero vector: cosine)

    # ---- reading ----
    def load(self, limit: int | None = None) -> Any:
        """The rows as a ``datasets.Dataset``: ``id``, ``VECTOR``, ``PAYLOAD`` (with a payload column) or the
        other columns as payload. Sets ``dim``; refuses a column of mixed lengths without ``dim``."""
        ds = self._read_npy(limit) if self.npy else self._read_table(limit)
        self.lengths = _lengths(ds, VECTOR, self.source)
        self.dim = self._pick_dim()
        return ds

    def _read_table(self, limit: int | None) -> Any:
        if self.hf is not None:
            ds = self.hf._raw()
        else:
            from datasets import load_dataset

            try:
                ds = load_dataset("parquet", data_files=str(self.path), split="train")
            except Exception as exc:  # noqa: BLE001 - datasets raises many kinds
                raise CorpusError(f"cannot read {self.path}: {exc}") from None
        cols = ds.column_names
        for what, col in (("vector", self.vector_column), ("payload", self.payload_column)):
            if col is not None and col not in cols:
                flag = f"--{what}-column"
                raise CorpusError(f"{self.source}: no {what} column {col!r} (columns: {cols}); check {flag}")
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))
        if self.payload_column is not None:  # the payload object replaces the other columns
            keep = {self.vector_column, self.payload_column, self.id_column}
            ds = ds.remove_columns([c for c in cols if c not in keep])
            ds = ds.rename_column(self.payload_column, PAYLOAD)
        ds = ds.rename_column(self.vector_column, VECTOR)
        return assign_ids(ds, self.id_column, self.source)

    def _read_npy(self, limit: int | None) -> Any:
        import numpy as np
        import pyarrow as pa  # type: ignore[import-untyped]
        from datasets import Dataset

        assert self.path is not None
        try:
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CorpusError(f"cannot read {self.path}: {exc}") from None
        if arr.ndim != 2 or arr.dtype.kind not in "fiu":
            raise CorpusError(
                f"{self.path}: a vector file holds a 2-d numeric array (rows x dimension), this one is "
                f"{arr.ndim}-d {arr.dtype}"
            )
        n = min(limit, len(arr)) if limit is not None else len(arr)
        flat = pa.array(np.ascontiguousarray(arr[:n], dtype=np.float32).ravel())
        table: dict[str, Any] = {VECTOR: pa.FixedSizeListArray.from_arrays(flat, int(arr.shape[1]))}
        if self.id_column != "id":
            table["id"] = self._side_lines(self.id_column, "--id-column", len(arr))[:n]
        else:
            table["id"] = [str(i) for i in range(n)]
        if self.payload_column is not None:
            table[PAYLOAD] = self._side_lines(self.payload_column, "--payload-column", len(arr))[:n]
        # a fingerprint of its own: without one, datasets hashes the whole table, which copies every vector in RAM
        # several times over (6.3 GB at the peak for 1M 384-d rows, where the rows themselves stay in the file map)
        st = self.path.stat()
        key = f"{self.path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{n}:{self.id_column}:{self.payload_column}"
        ds = Dataset(pa.table(table), fingerprint=hashlib.sha256(key.encode()).hexdigest()[:32])
        return assign_ids(ds, "id", str(self.path))

    def _side_lines(self, name: str, flag: str, rows: int) -> list[str]:
        """A .npy's ids (a text file, one per line) or payloads (a JSONL file, one object per line)."""
        p = Path(name).expanduser()
        if not p.is_file():
            raise CorpusError(f"{flag} {name}: for a .npy source it names a file with one line per row; none found")
        try:
            lines = text_lines(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CorpusError(f"cannot read {p}: {exc}") from None
        if len(lines) != rows:
            raise CorpusError(f"{flag} {p} has {len(lines)} lines but {self.path} has {rows} rows: one line per row")
        return lines

    def _pick_dim(self) -> int:
        """The collection's dimension: ``dim`` when given, else the one length of the column's vectors."""
        if self.want_dim is not None:
            return self.want_dim
        if not self.lengths:
            raise CorpusError(f"{self.source}: the vector column {self.vector_column!r} holds no vectors")
        if len(self.lengths) > 1:
            seen = ", ".join(f"{d}: {n} rows" for d, n in self.lengths.most_common(5))
            raise CorpusError(
                f"{self.source}: the vector column {self.vector_column!r} holds vectors of several lengths ({seen}): "
                "pass --dim N to keep the vectors of length N (the others are rejected one by one), or fix the "
                "source; nothing was written"
            )
        return next(iter(self.lengths))

    def recorded_metric(self) -> str | None:
        """The metric a parquet file written by ``simlookup export`` records, else None."""
        if self.path is None or self.path.suffix.lower() != ".parquet":
            return None
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        try:
            meta = pq.read_schema(self.path).metadata or {}
            metric = json.loads(meta[EXPORT_INFO_KEY])["metric"]
        except (KeyError, TypeError, ValueError, OSError):
            return None
        return str(metric) if metric else None

    def fingerprint(self) -> str:
        """The source's content and the columns read from it (both decide the rows)."""
        cols = (
            f"vector={self.vector_column},id={self.id_column},payload={self.payload_column},dim={self.want_dim},"
            f"metric={self.metric}"
        )
        if self.hf is not None:
            return f"vectors:{self.hf.fingerprint()}:{cols}"
        assert self.path is not None
        side = [Path(c) for c in (self.id_column, self.payload_column) if self.npy and c and c != "id"]
        return f"vectors:{self.path.name}@{file_digest([self.path, *side])}:{cols}"


def _lengths(ds: Any, col: str, where: str) -> Counter[int]:
    """How many rows hold a vector of each length (null rows left out); a column that is not a list of
    numbers is refused by its type, before any row is read."""
    import pyarrow as pa
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    if ds._indices is not None:
        ds = ds.flatten_indices()
    arr = ds.data.column(col)
    t = arr.type
    is_list = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    v = t.value_type if is_list else None
    if v is None or not (pa.types.is_integer(v) or pa.types.is_floating(v) or pa.types.is_null(v)):
        raise CorpusError(
            f"{where}: the vector column holds {t}, not lists of numbers: name the column of float lists "
            "with --vector-column"
        )
    if pa.types.is_fixed_size_list(t):
        valid = len(arr) - arr.null_count
        return Counter({t.list_size: valid} if valid else {})
    counts = pc.value_counts(pc.drop_null(pc.list_value_length(arr)))
    return Counter({int(c["values"].as_py()): int(c["counts"].as_py()) for c in counts})


def vector_of(value: Any, dim: int, cosine: bool) -> tuple[Any, str | None]:
    """One row's vector as float32, or the reason the row is rejected (no vector, wrong length, a cell that is
    not a number, NaN or inf, a zero vector under cosine, a norm whose scores would overflow float32)."""
    import numpy as np

    if value is None:
        return None, "no vector (null)"
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__"):
        return None, f"not a list of numbers ({type(value).__name__})"
    if len(value) != dim:
        return None, f"vector of {len(value)} numbers; the collection's vectors have {dim}"
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        bad = next((i for i, x in enumerate(value) if x is None or isinstance(x, (bool, str))), 0)
        return None, f"element {bad} is not a number ({value[bad]!r})"
    vec = arr.astype(np.float64)
    if not np.isfinite(vec).all() or not np.isfinite(vec.astype(np.float32)).all():
        return None, "vector holds NaN or inf (or a number beyond float32)"
    sq = float(vec @ vec)
    if cosine and sq == 0.0:
        return None, "zero vector (no cosine similarity)"
    if not cosine and sq > 1e30:
        return None, "vector norm above 1e15: its scores would overflow float32"
    return vec.astype(np.float32), None


def payload_of(value: Any) -> tuple[dict[str, Any] | None, str | None]:
    """A payload cell (JSON text or a struct) as a JSON object, or the reason the row is rejected."""
    if value is None:
        return {}, None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            return None, f"payload is not valid JSON ({exc})"
    if not isinstance(value, dict):
        return None, f"payload is a JSON {type(value).__name__}, not an object"
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return None, "payload holds NaN or inf"
    return value, None
