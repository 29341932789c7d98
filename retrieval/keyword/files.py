"""The keyword index's files under ``<data_dir>/faiss/<name>/keyword/``, written crash-safely, never pickled.

``postings.<generation>.<seq>.npz`` holds the arrays (numpy's zip of ``.npy`` files, read with
``allow_pickle=False``): per fid its length, seen and live flags; the postings (terms, slices, fids, counts).
``manifest.json`` names that file with its sha256, the point-store state it reflects (generation, seq), the
tokenizer and the field. Both go through ``retrieval.stores.manifest``'s atomic write (temporary file, fsync,
rename): the data file first, then the manifest, then older data files are removed, so a kill at any point leaves
the previous manifest and the file it names. A file that is missing, fails its checksum or does not parse is
reported and rebuilt from the point store, which is the truth; the files only spare the tokenizing on open.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.keyword.index import KeywordIndex
from retrieval.keyword.tokenize import TOKENIZER
from retrieval.stores.manifest import atomic_write, now_iso, sha256_file, write_json

log = logging.getLogger(__name__)
FORMAT = 1
MANIFEST = "manifest.json"
_ARRAYS = {
    "dl": np.int32,
    "seen": np.bool_,
    "alive": np.bool_,
    "terms": np.uint32,
    "ptr": np.int64,
    "p_fids": np.int64,
    "p_tf": np.float32,
}


def save(kw: KeywordIndex) -> Path:
    """Write the index's state (merged first: dead postings dropped); the data file written."""
    with kw.lock:
        kw.merge()
        kw.folder.mkdir(parents=True, exist_ok=True)
        n = kw.next_fid
        arrays = {
            "dl": kw.dl[:n],
            "seen": kw.seen[:n],
            "alive": kw.alive[:n],
            "terms": kw.terms,
            "ptr": kw.ptr,
            "p_fids": kw.p_fids,
            "p_tf": kw.p_tf,
        }
        path = kw.folder / f"postings.{kw.generation}.{kw.seq}.npz"

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)  # type: ignore[arg-type]

        atomic_write(path, write)
        write_json(
            kw.folder / MANIFEST,
            {
                "format": FORMAT,
                "tokenizer": TOKENIZER,
                "field": kw.field,
                "generation": kw.generation,
                "seq": kw.seq,
                "next_fid": n,
                "file": path.name,
                "sha256": sha256_file(path),
                "saved": now_iso(),
            },
        )
        for other in kw.folder.glob("postings.*.npz"):
            if other.name != path.name:
                other.unlink(missing_ok=True)
        kw.dirty = False
        return path


def load(kw: KeywordIndex) -> str | None:
    """Fill the index from its files; None when loaded, else why not (the caller rebuilds from the point store)."""
    mpath = kw.folder / MANIFEST
    if not mpath.exists():
        return "no keyword index files yet"
    try:
        meta = json.loads(mpath.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return _damaged(kw, f"{mpath} is unreadable ({exc})")
    if meta.get("format") != FORMAT or meta.get("tokenizer") != TOKENIZER or meta.get("field") != kw.field:
        return (
            f"{mpath} was written for format {meta.get('format')!r}, tokenizer {meta.get('tokenizer')!r}, field "
            f"{meta.get('field')!r} (this one: {FORMAT}, {TOKENIZER!r}, {kw.field!r})"
        )
    data = kw.folder / str(meta.get("file"))
    try:
        if sha256_file(data) != meta.get("sha256"):
            return _damaged(kw, f"{data} does not match the checksum in {mpath} (half-written or changed)")
        with np.load(data, allow_pickle=False) as z:
            arrays: dict[str, np.ndarray] = {name: np.asarray(z[name], dtype=t) for name, t in _ARRAYS.items()}
        _check(arrays, int(meta["next_fid"]))
        generation, seq = int(meta["generation"]), int(meta["seq"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return _damaged(kw, f"{data} is unreadable ({type(exc).__name__}: {exc})")
    _fill(kw, arrays, int(meta["next_fid"]), generation, seq)
    return None


def _damaged(kw: KeywordIndex, why: str) -> str:
    log.warning("keyword index %s: %s; rebuilding it from the point store", kw.folder, why)
    return why


def _check(a: dict[str, np.ndarray], n: int) -> None:
    """Refuse arrays that do not fit together (ValueError)."""
    if not all(a[k].ndim == 1 for k in a):
        raise ValueError("an array is not one-dimensional")
    if not len(a["dl"]) == len(a["seen"]) == len(a["alive"]) == n:
        raise ValueError(f"per-fid arrays are not {n} long")
    ptr = a["ptr"]
    if len(ptr) != len(a["terms"]) + 1 or ptr[0] != 0 or ptr[-1] != len(a["p_fids"]) or (np.diff(ptr) <= 0).any():
        raise ValueError("posting slices do not fit the postings")
    if len(a["p_tf"]) != len(a["p_fids"]) or (len(a["p_fids"]) and not 0 <= a["p_fids"].min() <= a["p_fids"].max() < n):
        raise ValueError("posting fids out of range")
    if (np.diff(a["terms"].astype(np.int64)) <= 0).any() or (a["dl"] < 0).any():
        raise ValueError("terms not ascending, or a negative length")


def _fill(kw: KeywordIndex, a: dict[str, Any], n: int, generation: int, seq: int) -> None:
    with kw.lock:
        kw.reset()
        kw.dl, kw.seen, kw.alive = a["dl"].copy(), a["seen"].copy(), a["alive"].copy()
        kw.terms, kw.ptr, kw.p_fids, kw.p_tf = a["terms"], a["ptr"], a["p_fids"], a["p_tf"]
        kw.next_fid, kw.generation, kw.seq = n, generation, seq
        counted = kw.alive & (kw.dl > 0)
        kw.n_docs, kw.total_len = int(counted.sum()), int(kw.dl[kw.alive].sum())
        kw.dirty = False
