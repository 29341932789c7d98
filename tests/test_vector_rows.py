"""VectorFile.read_rows: rows gathered through a map made for the call (any order, repeats, shapes), nothing left
mapped afterwards, and a file cut short under a reader is a clear error, not a crash (SIGBUS)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import CorruptIndexError
from retrieval.stores.vector_file import VectorFile


def _file(tmp_path: Path, n: int = 5000, dim: int = 24) -> tuple[Path, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    p = tmp_path / "vectors.f32"
    x.tofile(p)
    return p, x


def _maps_of(path: Path) -> int:
    return sum(str(path) in line for line in Path("/proc/self/maps").read_text().splitlines())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc/self/maps")
def test_rows_in_any_order_with_repeats_and_nothing_left_mapped(tmp_path: Path) -> None:
    p, x = _file(tmp_path)
    vf = VectorFile(p, x.shape[1], len(x), writable=False, repair="re-create it")
    try:
        before = _maps_of(p)
        rows = np.random.default_rng(1).integers(0, len(x), size=(7, 30))
        np.testing.assert_array_equal(vf.read_rows(rows), x[rows])
        np.testing.assert_array_equal(vf.read_rows(np.array([4999, 0, 0, 17])), x[[4999, 0, 0, 17]])
        assert _maps_of(p) == before  # the call's own map is gone
    finally:
        vf.close()


def test_a_file_cut_short_under_a_reader_is_a_clear_error(tmp_path: Path) -> None:
    p, x = _file(tmp_path)
    vf = VectorFile(p, x.shape[1], len(x), writable=False, repair="re-create it")
    try:
        os.truncate(p, 100 * x.shape[1] * 4)  # another process cut it to 100 rows
        np.testing.assert_array_equal(vf.read_rows(np.array([3, 99])), x[[3, 99]])
        with pytest.raises(CorruptIndexError, match="ended before row 4000"):
            vf.read_rows(np.array([3, 4000]))
    finally:
        vf.close()
