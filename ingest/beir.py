"""BEIR-format judged sets: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/test.tsv`` in one folder.

``read_beir(folder)`` reads and checks all three before anything is written (a missing file, a line that is not
a JSON object, an empty id or query, a duplicate id, a qrels line naming an unknown id: an error naming the file
and the line). ``BeirCorpus`` is the folder's corpus as an ingest source (``beir:<folder>``): one point per
document, its id the BEIR ``_id``, its text the title and the text joined by a space, as BEIR's dense models do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.corpora.base import CorpusError, CorpusSpec, file_digest
from ingest.corpora.files import text_lines

PREFIX = "beir:"
CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_FILE = "qrels/test.tsv"
PROVENANCE_FILE = "provenance.json"


class BeirError(CorpusError):
    """A BEIR folder that cannot be used: the message names the file and the line."""


@dataclass(frozen=True)
class BeirDoc:
    """One corpus document."""

    id: str
    title: str
    text: str

    @property
    def content(self) -> str:
        """What is embedded: title and text joined by a space (BEIR's convention), stripped."""
        return f"{self.title} {self.text}".strip()


@dataclass
class BeirSet:
    """A checked BEIR folder: documents, the judged queries (those with a qrels line) and graded qrels."""

    folder: Path
    docs: dict[str, BeirDoc]
    queries: dict[str, str]  # judged queries only, in file order
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> grade (> 0: relevant)
    unjudged_queries: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The dataset's name: the provenance's, else the folder's."""
        return str(self.provenance.get("name") or self.folder.name)


def _need(folder: Path, rel: str) -> Path:
    p = folder / rel
    if not p.is_file():
        raise BeirError(
            f"{p}: no such file; a BEIR folder holds {CORPUS_FILE}, {QUERIES_FILE} and {QRELS_FILE} "
            f"(looked in {folder.absolute()})"
        )
    return p


def _jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line; a line that is not a JSON object is an error naming it."""
    out = []
    try:
        lines = text_lines(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BeirError(f"{path}: cannot read it ({exc})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BeirError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise BeirError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
        out.append((n, obj))
    return out


def _id_of(path: Path, n: int, obj: dict[str, Any], seen: dict[str, int]) -> str:
    raw = obj.get("_id")
    if isinstance(raw, bool) or not isinstance(raw, str | int) or not str(raw).strip():
        raise BeirError(f'{path}:{n}: missing or empty "_id" (each line needs a non-empty string id)')
    key = str(raw)
    if key in seen:
        raise BeirError(f"{path}:{n}: duplicate _id {key!r} (first on line {seen[key]})")
    seen[key] = n
    return key


def _text(path: Path, n: int, obj: dict[str, Any], key: str) -> str:
    v = obj.get(key, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise BeirError(f"{path}:{n}: {key!r} must be a string, got {type(v).__name__}")
    return v


def read_docs(folder: Path) -> dict[str, BeirDoc]:
    """The corpus documents by id, checked (ids unique and non-empty)."""
    path = _need(folder, CORPUS_FILE)
    seen: dict[str, int] = {}
    docs = {}
    for n, obj in _jsonl(path):
        i = _id_of(path, n, obj, seen)
        docs[i] = BeirDoc(i, _text(path, n, obj, "title"), _text(path, n, obj, "text"))
    if not docs:
        raise BeirError(f"{path}: no documents")
    return docs


def read_beir(folder: Path | str) -> BeirSet:
    """Read and check a BEIR folder (corpus, queries, ``qrels/test.tsv``); nothing is written."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise BeirError(f"{folder}: no such folder (a BEIR folder holds {CORPUS_FILE}, {QUERIES_FILE}, {QRELS_FILE})")
    qrels_path = _need(folder, QRELS_FILE)
    qpath = _need(folder, QUERIES_FILE)
    docs = read_docs(folder)
    seen: dict[str, int] = {}
    queries: dict[str, str] = {}
    for n, obj in _jsonl(qpath):
        i = _id_of(qpath, n, obj, seen)
        text = _text(qpath, n, obj, "text")
        if not text.strip():
            raise BeirError(f"{qpath}:{n}: query {i!r} has an empty text")
        queries[i] = text
    qrels = read_qrels(qrels_path, queries, docs)
    judged = {q: t for q, t in queries.items() if q in qrels}
    if not judged:
        raise BeirError(f"{qrels_path}: no query has a judged document")
    prov: dict[str, Any] = {}
    pp = folder / PROVENANCE_FILE
    if pp.is_file():
        try:
            prov = json.loads(pp.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise BeirError(f"{pp}: not readable JSON ({exc})") from None
    return BeirSet(folder, docs, judged, qrels, len(queries) - len(judged), prov)


def read_qrels(path: Path, queries: dict[str, str], docs: dict[str, BeirDoc]) -> dict[str, dict[str, int]]:
    """``query-id <tab> corpus-id <tab> score`` lines after a header; every id must be known, each pair once."""
    try:
        lines = text_lines(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BeirError(f"{path}: cannot read it ({exc})") from None
    if not lines or lines[0].split("\t")[0].strip() != "query-id":
        raise BeirError(f"{path}:1: expected the header 'query-id<TAB>corpus-id<TAB>score'")
    qrels: dict[str, dict[str, int]] = {}
    first: dict[tuple[str, str], int] = {}
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        f = line.rstrip("\r").split("\t")
        if len(f) != 3:
            raise BeirError(f"{path}:{n}: expected 3 tab-separated fields (query-id, corpus-id, score), got {len(f)}")
        q, d, s = f
        if q not in queries:
            raise BeirError(f"{path}:{n}: query id {q!r} is not in {QUERIES_FILE}")
        if d not in docs:
            raise BeirError(f"{path}:{n}: corpus id {d!r} is not in {CORPUS_FILE}")
        try:
            grade = int(s)
        except ValueError:
            raise BeirError(f"{path}:{n}: score {s!r} is not an integer") from None
        if (q, d) in first:
            raise BeirError(f"{path}:{n}: duplicate judgment of ({q!r}, {d!r}) (first on line {first[q, d]})")
        first[q, d] = n
        qrels.setdefault(q, {})[d] = grade
    return {q: r for q, r in qrels.items() if any(g > 0 for g in r.values())}


def corpus_spec(folder: Path | str) -> str:
    """The ingest source string of a BEIR folder: ``beir:<absolute path>``."""
    return PREFIX + str(Path(folder).expanduser().resolve())


class BeirCorpus:
    """A BEIR folder's documents as an ingest source: id = ``_id``, text = title + text, payload ``title``."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self.spec = CorpusSpec(
            name=self.folder.name, modality="text", text_column="text", description=f"BEIR folder {self.folder}"
        )

    def load(self, limit: int | None = None) -> Any:
        from datasets import Dataset

        docs = list(read_docs(self.folder).values())
        if limit is not None:
            docs = docs[:limit]
        return Dataset.from_dict(
            {"id": [d.id for d in docs], "text": [d.content for d in docs], "title": [d.title for d in docs]}
        )

    def fingerprint(self) -> str:
        return "beir@" + file_digest([_need(self.folder, CORPUS_FILE)])


def ingest_losses(data: BeirSet, rejects: list[dict[str, Any]], rejects_file: str | Path) -> dict[str, Any]:
    """How the set's documents fared at its collection's ingest, from the collection's rejects file (``rejects``:
    its rows, ``rejects_file``: its path): ``corpus_documents`` (in corpus.jsonl), ``rejected_documents`` (the
    documents of this set the ingest rejected: an empty title and text, ...), ``rejected_judged`` (the judged
    ones among them: no query can find them, and every metric counts them as misses), ``affected_queries`` and
    ``warnings`` (one line naming the rejects file when a judged document was rejected, or any document)."""
    why: dict[str, str] = {}
    for r in rejects:
        i = str(r.get("id", ""))
        if i in data.docs and i not in why:
            why[i] = str(r.get("reason") or "rejected")
    relevant = {q: {d for d, g in r.items() if g > 0} for q, r in data.qrels.items() if q in data.queries}
    judged = sorted({d for docs in relevant.values() for d in docs} & set(why))
    affected = sorted(q for q, docs in relevant.items() if docs & set(why))
    warnings = []
    if judged:
        shown = ", ".join(f"{d!r} ({why[d]})" for d in judged[:5]) + (", ..." if len(judged) > 5 else "")
        warnings.append(
            f"{len(judged)} judged document(s) of {data.name} were rejected at ingest ({shown}; see {rejects_file}): "
            f"{len(affected)} judged quer{'y' if len(affected) == 1 else 'ies'} can never find them, and every "
            "metric counts them as misses"
        )
    elif why:
        warnings.append(
            f"{len(why)} document(s) of {data.name} were rejected at ingest (none of them judged; see {rejects_file})"
        )
    return {
        "corpus_documents": len(data.docs),
        "rejected_documents": len(why),
        "rejected_judged": judged,
        "affected_queries": len(affected),
        "rejects_file": str(rejects_file),
        "warnings": warnings,
    }
