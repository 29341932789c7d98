"""Local corpora: csv / jsonl / parquet files, and image folders with an optional captions file."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ingest.corpora.base import CorpusError, CorpusSpec, file_digest

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
CAPTION_FILES = ("captions.csv", "captions.jsonl")


def text_lines(text: str) -> list[str]:
    """The lines of a text file's content, split on "\\n" alone ("\\r\\n" too): a JSON string may hold U+2028, U+2029
    and U+0085 as they are, which ``str.splitlines`` would take for line ends (and split the line)."""
    if not text:
        return []
    lines = [ln.removesuffix("\r") for ln in text.split("\n")]
    return lines[:-1] if lines[-1] == "" else lines


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
        """The rows as a table: ``text``, a string ``id``, the payload columns, and each row's payload as the file
        holds it (``SOURCE_PAYLOAD``). CSV and JSON are read by Python's own readers, so that no cell is refused
        or retyped by a table's type guessing (a 30-digit number, ``"1"`` beside ``2``)."""
        if self.fmt == "parquet":
            from datasets import load_dataset

            try:
                ds = load_dataset("parquet", data_files=str(self.path), split="train")
            except Exception as exc:  # noqa: BLE001 - datasets raises many kinds
                raise CorpusError(f"cannot read {self.path}: {exc}") from None
        else:
            if self.fmt == "csv":
                read = self._csv_rows("\t" if self.path.suffix.lower() == ".tsv" else ",")
                verbatim, payloads = read, csv_payloads([r for _, r in read])
            else:
                verbatim = self._json_rows()
                payloads = [r for _, r in verbatim]
            ds = self._table(verbatim, payloads)
        return normalise_columns(ds, self.spec.text_column or "text", self.id_column, limit, str(self.path))

    def _csv_rows(self, delimiter: str) -> list[tuple[int, dict[str, Any]]]:
        """(line, row) of every non-blank row, cells as written; a row with more cells than the header is an error."""
        import csv

        out: list[tuple[int, dict[str, Any]]] = []
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f, delimiter=delimiter)
                for r in reader:
                    extra = r.get(None)  # DictReader's key for surplus cells
                    if extra:
                        width = len(reader.fieldnames or [])
                        raise CorpusError(
                            f"{self.path}: line {reader.line_num} has {width + len(extra)} cells but the header "
                            f"names {width} columns; check the quoting"
                        )
                    if any(v not in (None, "") for v in r.values()):
                        out.append((reader.line_num, r))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise CorpusError(f"cannot read {self.path}: {exc}") from None
        return out

    def _json_rows(self) -> list[tuple[int, dict[str, Any]]]:
        """(line, row) as Python's json reads them (a JSON array of objects, or one object per line), numbers
        exact: an integer of any size stays that integer, and a float remembers how it was written."""
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CorpusError(f"cannot read {self.path}: {exc}") from None
        rows: list[tuple[int, Any]] | None = None
        if self.path.suffix.lower() == ".json":
            try:
                whole = json.loads(text, parse_float=_WrittenFloat)
            except ValueError:
                whole = None
            if isinstance(whole, list):
                rows = [(i + 1, r) for i, r in enumerate(whole)]  # "line" = position in the array, from 1
        if rows is None:
            rows = []
            for n, line in enumerate(text_lines(text), 1):
                if not line.strip():
                    continue
                try:
                    rows.append((n, json.loads(line, parse_float=_WrittenFloat)))
                except ValueError as exc:
                    raise CorpusError(f"{self.path}: line {n} is not valid JSON ({exc})") from None
        for n, r in rows:
            if not isinstance(r, dict):
                raise CorpusError(f"{self.path}: line {n} holds a JSON {type(r).__name__}, not an object")
        return rows

    def _table(self, verbatim: list[tuple[int, dict[str, Any]]], payloads: list[dict[str, Any]]) -> Any:
        """The table of the rows: the id and text columns as written (strings), the other columns as their
        payload values (a column no table type holds, such as a 30-digit integer, as JSON text), and
        ``SOURCE_PAYLOAD``, each row's payload as the file holds it, which the ingest uses."""
        from datasets import Dataset

        text_col = self.spec.text_column or "text"
        cols = list(dict.fromkeys(k for _, r in verbatim for k in r if k is not None))
        table: dict[str, list[Any]] = {}
        for c in cols:
            if c in (self.id_column, text_col):
                table[c] = self._written_column(c, [(n, r.get(c)) for n, r in verbatim], text=c == text_col)
            else:
                table[c] = _typed_column([r.get(c) for r in payloads])
        skip = {self.id_column, text_col, "text", "id", ORIGINAL_ID, "image"}
        source = []
        for r in payloads:
            src = {k: v for k, v in r.items() if k not in skip}
            if self.id_column != "id" and "id" in r:  # the file's own id column, kept as orig_id
                src[ORIGINAL_ID] = r["id"]
            elif ORIGINAL_ID in r and self.id_column != ORIGINAL_ID:
                src[ORIGINAL_ID] = r[ORIGINAL_ID]
            source.append(json.dumps(src))
        table[SOURCE_PAYLOAD] = source
        return Dataset.from_dict(table)

    def _written_column(self, col: str, cells: list[tuple[int, Any]], text: bool) -> list[Any]:
        """An id or text column as written: numbers and bools as their written form (``2.50`` stays "2.50",
        10**30 stays "1000…0"); an id that is a list or object as its string form; a text that is one stays
        a list or object (the row is rejected), unless the column also holds strings: that is an error."""
        out = [_as_written(v) if not isinstance(v, (list, dict)) or not text else v for _, v in cells]
        if self.fmt == "csv":
            out = [None if v == "" else v for v in out]  # an empty cell is null, as in the payload
        if text and any(isinstance(v, str) for v in out):
            bad = next(((n, v) for (n, _), v in zip(cells, out, strict=True) if isinstance(v, (list, dict))), None)
            if bad is not None:
                raise CorpusError(
                    f"{self.path}: line {bad[0]}: the text column {col!r} holds a JSON {type(bad[1]).__name__}; "
                    "texts must be strings or numbers"
                )
        return out

    def fingerprint(self) -> str:
        """The file's content hash and the columns read from it (both decide the rows)."""
        cols = f"text={self.spec.text_column},id={self.id_column}"
        # csv ids and texts read as written; csv/json payloads as the file holds them; json ids and texts as
        # written, csv numbers within 64 bits and csv true/false as bools (each changed the rows, so the cache key)
        verbatim = {
            "csv": ",verbatim-csv,source-payload,csv-int64,csv-bool",
            "json": ",source-payload,json-written",
        }.get(self.fmt, "")
        return f"file:{self.path.name}@{file_digest([self.path])}:{cols}{verbatim}"


_CSV_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_CSV_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)\.[0-9]*[1-9]|-?(0|[1-9][0-9]*)\.0")
INT64 = (-(2**63), 2**63 - 1)


def _plain_number(cell: str) -> bool:
    """A cell written as a plain number that a payload holds exactly enough: an integer within 64 bits, or a
    decimal whose value is finite (``1`` followed by 400 zeros ``.5`` would be inf)."""
    if _CSV_INT.fullmatch(cell):
        return INT64[0] <= int(cell) <= INT64[1]
    return bool(_CSV_FLOAT.fullmatch(cell)) and math.isfinite(float(cell))


def _bool_word(cell: str) -> bool:
    """A cell written ``true`` or ``false`` in any case, nothing else (not ``yes``, ``1`` or `` true``)."""
    return cell.lower() in ("true", "false")


def csv_payloads(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CSV cells as payload values: a column whose every non-empty cell is a number written plainly (no leading
    zero, sign or exponent: ``12``, ``-3``, ``2.5``; integers within 64 bits) holds numbers; a column whose every
    non-empty cell is ``true`` or ``false`` (any case) holds bools; any other column keeps its text as written
    (``007`` stays "007", a 30-digit integer its digits); an empty cell is null."""
    cols = list(dict.fromkeys(k for r in rows for k in r if k is not None))

    def every(c: str, test: Any) -> bool:
        return any(r.get(c) not in (None, "") for r in rows) and all(r.get(c) in (None, "") or test(r[c]) for r in rows)

    numeric = {c for c in cols if every(c, _plain_number)}
    boolean = {c for c in cols if every(c, _bool_word)}

    def cell(c: str, v: Any) -> Any:
        if v in (None, ""):
            return None
        if c in numeric:
            return int(v) if _CSV_INT.fullmatch(v) else float(v)
        if c in boolean:
            return v.lower() == "true"
        return v

    return [{c: cell(c, r.get(c)) for c in cols} for r in rows]


class _WrittenFloat(float):
    """A JSON float that remembers how the file wrote it (``2.50``, ``1e20``), for ids and texts."""

    written: str

    def __new__(cls, text: str) -> _WrittenFloat:
        obj = super().__new__(cls, text)
        obj.written = text
        return obj


def _as_written(v: Any) -> Any:
    """An id or text cell as the file wrote it: numbers and bools as text, strings and null as they are."""
    if isinstance(v, _WrittenFloat):
        return v.written
    if isinstance(v, (bool, int, float, list, dict)):
        return str(v)  # an int's digits are exact at any size; bools as before (True)
    return v


def _typed_column(values: list[Any]) -> list[Any]:
    """A payload column for the table: its values when one table type holds them all, else each value's JSON
    text (a 30-digit integer, ``"1"`` beside ``2``). The payload itself comes from ``SOURCE_PAYLOAD``."""
    import pyarrow as pa  # type: ignore[import-untyped]

    try:
        pa.array(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return [None if v is None else json.dumps(v) for v in values]
    return values


def normalise_columns(ds: Any, text_column: str, id_column: str, limit: int | None, where: str) -> Any:
    """Check the text column, make ``text`` and a unique string ``id`` column, keep the rest as payload."""
    if text_column not in ds.column_names:
        raise CorpusError(f"{where}: no text column {text_column!r} (columns: {user_columns(ds)}); pass --text-column")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    if text_column != "text":
        if "text" in ds.column_names:
            ds = ds.remove_columns("text")
        ds = ds.rename_column(text_column, "text")
    return assign_ids(ds, id_column, where)


ORIGINAL_ID = "orig_id"  # where a file's own ``id`` column goes when --id-column names another column
SOURCE_PAYLOAD = "__simlookup_source_payload__"  # JSON of a file row's payload fields as written (not a payload key)


def user_columns(ds: Any) -> list[str]:
    """The table's columns as the user knows them (without simlookup's internal ``SOURCE_PAYLOAD``)."""
    return [c for c in ds.column_names if c != SOURCE_PAYLOAD]


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
        raise CorpusError(f"{where}: no id column {id_column!r} (columns: {user_columns(ds)}); check --id-column")
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
                rows = [json.loads(line) for line in text_lines(p.read_text(encoding="utf-8")) if line.strip()]
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
