"""On-disk embedding cache: shards keyed by (row format, model fingerprint, corpus fingerprint, space, row range).

The model fingerprint covers the weights and the quantization tier; the corpus fingerprint covers the content
and the columns read (text, id, image), so another ``--text-column`` or ``--id-column`` never reuses a shard.
``<data_dir>/cache/v<ROWS_FORMAT>/<model>/<corpus>/<space>/shard-<start>-<end>.npy`` holds the float32 vectors and a
``.json`` beside it holds ids, payloads and rejects. Both are written to temporary files and renamed,
the JSON last, so a shard exists only once it is complete: a job killed at any point resumes from
its last complete shard. No pickle (``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.names import check_name
from retrieval.stores.manifest import atomic_write

ROWS_FORMAT = 2  # bump when the rows → (ids, payloads, rejects) rules change: v2 embeds numeric text cells


def _slug(s: str) -> str:
    """A folder name for a key: readable, and unique (a hash of the whole key, which may be long or lossy)."""
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", s)[:80] + "-" + hashlib.sha256(s.encode()).hexdigest()[:12]


@dataclass
class Shard:
    """One encoded slice of a corpus for one vector space."""

    start: int
    end: int
    ids: list[str]
    vectors: np.ndarray
    payloads: list[dict[str, Any]]
    rejects: list[dict[str, str]] = field(default_factory=list)


def cache_dirs(data_dir: Path, model_fps: list[str], corpus_fp: str) -> list[Path]:
    """The cache folders of these models over one corpus (every space of each), those that exist."""
    root = data_dir / "cache" / f"v{ROWS_FORMAT}"
    dirs = [root / _slug(fp) / _slug(corpus_fp) for fp in dict.fromkeys(model_fps)]
    return [d for d in dirs if d.is_dir()]


class EmbeddingCache:
    """Read and write shards under one (model, corpus, space) folder."""

    def __init__(self, data_dir: Path, model_fp: str, corpus_fp: str, space: str) -> None:
        self.dir = data_dir / "cache" / f"v{ROWS_FORMAT}" / _slug(model_fp) / _slug(corpus_fp) / check_name(space)

    def _paths(self, start: int, end: int) -> tuple[Path, Path]:
        stem = f"shard-{start:09d}-{end:09d}"
        return self.dir / f"{stem}.npy", self.dir / f"{stem}.json"

    def get(self, start: int, end: int) -> Shard | None:
        """The complete shard for rows [start, end), or None."""
        vpath, jpath = self._paths(start, end)
        if not jpath.exists() or not vpath.exists():
            return None
        try:
            meta = json.loads(jpath.read_text())
            vecs = np.load(vpath, allow_pickle=False)
        except (OSError, ValueError):
            return None  # unreadable: re-encode
        if len(vecs) != len(meta["ids"]):
            return None
        return Shard(start, end, meta["ids"], vecs, meta["payloads"], meta["rejects"])

    def put(self, shard: Shard) -> None:
        """Write a shard atomically (vectors first, the JSON marker last)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        vpath, jpath = self._paths(shard.start, shard.end)

        def _wv(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(shard.vectors, dtype=np.float32), allow_pickle=False)

        atomic_write(vpath, _wv)
        meta = {"ids": shard.ids, "payloads": shard.payloads, "rejects": shard.rejects}
        atomic_write(jpath, lambda tmp: Path(tmp).write_text(json.dumps(meta)))

    def vectors(self) -> tuple[list[str], np.ndarray]:
        """Every cached (id, vector), in shard order: what the benchmarks reuse."""
        ids: list[str] = []
        parts: list[np.ndarray] = []
        for jpath in sorted(self.dir.glob("shard-*.json")):
            start, end = (int(x) for x in jpath.stem.split("-")[1:3])
            sh = self.get(start, end)
            if sh is not None:
                ids += sh.ids
                parts.append(sh.vectors)
        return ids, (np.concatenate(parts) if parts else np.zeros((0, 0), np.float32))
