"""Local corpora: csv / jsonl / parquet files, and image folders with an optional captions file."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ingest.corpora.base import CorpusError, CorpusSpec, file_digest

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
CAPTION_FILES = ("captions.csv", "captions.jsonl")


class FileCorpus:
    """A table file: text from ``text_column``, id from ``id`` when present (else ``row-<n>``), the rest payload."""

    def __init__(self, path: Path, text_column: str = "text", id_column: str = "id") -> None:
        if not path.is_file():
            raise CorpusError(f"corpus file {path} does not exist")
        fmt = FILE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise CorpusError(f"corpus file {path}: unsupported format {path.suffix!r}; use {sorted(FILE_FORMATS)}")
        self.path = path
        self.fmt = fmt
        self.id_column = id_column
        self.spec = CorpusSpec(name=path.stem, modality="text", text_column=text_column, description=f"file {path}")

    def load(self, limit: int | None = None) -> Any:
        from datasets import load_dataset

        kwargs: dict[str, Any] = {"delimiter": "\t"} if self.path.suffix.lower() == ".tsv" else {}
        try:
            ds = load_dataset(self.fmt, data_files=str(self.path), split="train", **kwargs)
        except Exception as exc:  # noqa: BLE001 - datasets raises many kinds
            raise CorpusError(f"cannot read {self.path}: {exc}") from None
        if self.fmt == "csv":
            rows = self._csv_rows(kwargs.get("delimiter", ","))
            if len(rows) != len(ds):
                raise CorpusError(
                    f"{self.path}: read {len(rows)} rows as text but {len(ds)} as a table; check the quoting"
                )
            ds = self._verbatim_columns(ds, rows)
            ds = self._source_payloads(ds, csv_payloads(rows))
        elif self.fmt == "json":
            ds = self._source_payloads(ds, self._json_rows(len(ds)))
        return normalise_columns(ds, self.spec.text_column or "text", self.id_column, limit, str(self.path))

    def _csv_rows(self, delimiter: str) -> list[dict[str, Any]]:
        import csv

        with self.path.open(newline="", encoding="utf-8") as f:
            return [r for r in csv.DictReader(f, delimiter=delimiter) if any(v not in (None, "") for v in r.values())]

    def _json_rows(self, expected: int) -> list[dict[str, Any]]:
        """The file's rows as Python's json reads them (a JSON array of objects, or one object per line)."""
        text = self.path.read_text(encoding="utf-8")
        rows: Any = None
        if self.path.suffix.lower() == ".json":
            try:
                rows = json.loads(text)
            except ValueError:
                rows = None
        if not isinstance(rows, list):
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        if len(rows) != expected or not all(isinstance(r, dict) for r in rows):
            raise CorpusError(f"{self.path}: read {len(rows)} JSON rows but {expected} as a table")
        return rows

    def _verbatim_columns(self, ds: Any, rows: list[dict[str, Any]]) -> Any:
        """CSV ids and texts exactly as written: pandas would turn ``007`` into 7 and ``1.0`` into 1."""
        keep = [c for c in (self.id_column, self.spec.text_column or "text") if c in ds.column_names]
        for col in dict.fromkeys(keep):
            raw = [r.get(col) for r in rows]
            ds = ds.remove_columns(col).add_column(col, [None if v in (None, "") else v for v in raw])
        return ds

    def _source_payloads(self, ds: Any, rows: list[dict[str, Any]]) -> Any:
        """Each row's payload fields as the file holds them, beside the table: a typed table makes a column one
        type (``"1"`` beside ``2`` becomes a number) and gives every row every key (missing ones as null)."""
        skip = {self.id_column, self.spec.text_column or "text", "text", "id", ORIGINAL_ID, "image"}
        if SOURCE_PAYLOAD in ds.column_names:
            ds = ds.remove_columns(SOURCE_PAYLOAD)
        col = [json.dumps({k: v for k, v in r.items() if k not in skip}) for r in rows]
        return ds.add_column(SOURCE_PAYLOAD, col)

    def fingerprint(self) -> str:
        """The file's content hash and the columns read from it (both decide the rows)."""
        cols = f"text={self.spec.text_column},id={self.id_column}"
        # csv ids and texts read as written; csv/json payloads as the file holds them (each changed the cache key)
        verbatim = {"csv": ",verbatim-csv,source-payload", "json": ",source-payload"}.get(self.fmt, "")
        return f"file:{self.path.name}@{file_digest([self.path])}:{cols}{verbatim}"


_CSV_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_CSV_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)\.[0-9]*[1-9]|-?(0|[1-9][0-9]*)\.0")


def csv_payloads(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CSV cells as payload values: a column whose every non-empty cell is a number written plainly (no leading
    zero, sign or exponent: ``12``, ``-3``, ``2.5``) holds numbers; any other column keeps its text as written
    (``007`` stays "007"); an empty cell is null."""
    cols = list(dict.fromkeys(k for r in rows for k in r if k is not None))
    numeric = {
        c
        for c in cols
        if any(r.get(c) not in (None, "") for r in rows)
        and all(
            r.get(c) in (None, "") or _CSV_INT.fullmatch(r[c]) or _CSV_FLOAT.fullmatch(r[c]) for r in rows
        )
    }

    def cell(c: str, v: Any) -> Any:
        if v in (None, ""):
            return None
        if c in numeric:
            return int(v) if _CSV_INT.fullmatch(v) else float(v)
        return v

    return [{c: cell(c, r.get(c)) for c in cols} for r in rows]


def normalise_columns(ds: Any, text_column: str, id_column: str, limit: int | None, where: str) -> Any:
    """Check the text column, make ``text`` and a unique string ``id`` column, keep the rest as payload."""
    if text_column not in ds.column_names:
        raise CorpusError(f"{where}: no text column {text_column!r} (columns: {ds.column_names}); pass --text-column")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    if text_column != "text":
        if "text" in ds.column_names:
            ds = ds.remove_columns("text")
        ds = ds.rename_column(text_column, "text")
    return assign_ids(ds, id_column, where)


ORIGINAL_ID = "orig_id"  # where a file's own ``id`` column goes when --id-column names another column
SOURCE_PAYLOAD = "__simlookup_source_payload__"  # JSON of a file row's payload fields as written (not a payload key)


def _blank(x: Any) -> bool:
    return x is None or (isinstance(x, float) and x != x) or (isinstance(x, str) and not x.strip())


def assign_ids(ds: Any, id_column: str, where: str) -> Any:
    """Replace ``id_column`` by a unique, non-empty string ``id`` column (``row-<n>`` when the default is absent).

    Empty ids and duplicates are refused with the rows they occur on; a column named ``id`` that is not the id
    column stays in the payload as ``orig_id``.
    """
    if id_column in ds.column_names:
        raw = ds[id_column]
        empty = [i for i, x in enumerate(raw) if _blank(x)]
        if empty:
            raise CorpusError(
                f"{where}: {len(empty)} row(s) have an empty id in column {id_column!r} (rows {empty[:10]}, "
                "counting from 0): give every row an id, or pass --id-column for another column"
            )
        ids = [str(x) for x in raw]
        dups = sorted(x for x, n in Counter(ids).items() if n > 1)
        if dups:
            raise CorpusError(f"{where}: column {id_column!r} has {len(dups)} duplicate id(s), e.g. {dups[:5]}")
        ds = ds.remove_columns(id_column)
    elif id_column != "id":
        raise CorpusError(f"{where}: no id column {id_column!r} (columns: {ds.column_names}); check --id-column")
    else:
        ids = [f"row-{i}" for i in range(len(ds))]
    if "id" in ds.column_names:  # the file's own 'id' column, when --id-column names another one
        ds = ds.remove_columns(ORIGINAL_ID) if ORIGINAL_ID in ds.column_names else ds
        ds = ds.rename_column("id", ORIGINAL_ID)
    return ds.add_column("id", ids)


class ImageFolderCorpus:
    """Images under a folder (recursively); ``captions.csv`` / ``captions.jsonl`` (file, caption) optional."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise CorpusError(f"image folder {root} does not exist")
        self.root = root
        self.files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        self.captions = self._read_captions()
        self.spec = CorpusSpec(
            name=root.name,
            modality="image",
            text_column=None,
            image_column="image",
            caption_column="caption" if self.captions else None,
            payload_indexes={"label": "keyword"},
            description=f"image folder {root}",
        )

    def _read_captions(self) -> dict[str, str]:
        import csv
        import json

        for name in CAPTION_FILES:
            p = self.root / name
            if not p.exists():
                continue
            if name.endswith(".csv"):
                with open(p, newline="", encoding="utf-8") as f:
                    rows = list(csv.DictReader(f))
            else:
                rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
            if rows and not {"file", "caption"} <= set(rows[0]):
                raise CorpusError(f"{p}: needs columns 'file' and 'caption'")
            return {r["file"]: r["caption"] for r in rows}
        return {}

    def load(self, limit: int | None = None) -> Any:
        from datasets import Dataset

        files = self.files[:limit] if limit is not None else self.files
        rows = []
        for p in files:
            rel = p.relative_to(self.root).as_posix()
            label = p.parent.name if p.parent != self.root else ""
            rows.append({"id": rel, "image": str(p), "file": rel, "caption": self.captions.get(rel), "label": label})
        return Dataset.from_list(rows) if rows else Dataset.from_dict({k: [] for k in ("id", "image", "file")})

    def fingerprint(self) -> str:
        extra = [self.root / n for n in CAPTION_FILES if (self.root / n).exists()]
        return f"images:{self.root.name}@{file_digest(self.files + extra, content_limit=0)}"
