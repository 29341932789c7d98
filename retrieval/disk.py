"""Bytes files and folders take on disk: the one home for every size the stores, ingest and benchmarks report.

"Used" bytes are the blocks a file really occupies (``st_blocks`` × 512: a sparse or preallocated file counts what
it holds); "apparent" bytes are its length (``st_size``). A path that is missing, or vanishes while it is read,
counts 0.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["file_bytes", "folder_bytes", "tree_bytes"]


def file_bytes(path: Path, apparent: bool = False) -> int:
    """Bytes one file takes on disk (its length when ``apparent``); 0 when it does not exist."""
    try:
        st = path.stat()
    except OSError:
        return 0
    return int(st.st_size) if apparent else int(st.st_blocks) * 512


def tree_bytes(root: Path, apparent: bool = False) -> dict[str, int]:
    """Every file under root, recursively: path relative to root → bytes on disk (length when ``apparent``)."""
    if not root.is_dir():
        return {}
    return {str(f.relative_to(root)): file_bytes(f, apparent) for f in sorted(root.rglob("*")) if f.is_file()}


def folder_bytes(root: Path, apparent: bool = False) -> int:
    """Bytes every file under root takes on disk, recursively (their lengths when ``apparent``)."""
    return sum(tree_bytes(root, apparent).values())
