"""In-memory payload index of a FAISS collection: int64 point ids → payloads, answering filters.

The seam between the filter language (``retrieval.filters``) and the FAISS collection store: the store
adds and removes points, and asks ``match(filter)`` for the sorted int64 ids of the live points whose
payload satisfies the filter. This first version scans every payload with ``Filter.matches``; the
bitmap version keeps the same contract and costs in proportion to what a filter matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from retrieval.filters import Filter


class PayloadIndex:
    """fid → payload, and the fids matching a filter."""

    def __init__(self) -> None:
        self._payloads: dict[int, Mapping[str, Any]] = {}

    def add(self, fids: Sequence[int] | np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        """Index these points (an fid already present is replaced)."""
        for fid, pl in zip(np.asarray(fids, dtype=np.int64).tolist(), payloads, strict=True):
            self._payloads[int(fid)] = pl

    def remove(self, fids: Iterable[int] | np.ndarray) -> None:
        """Forget these points; unknown fids are ignored."""
        for fid in np.asarray(list(fids) if not isinstance(fids, np.ndarray) else fids, dtype=np.int64).tolist():
            self._payloads.pop(int(fid), None)

    def match(self, flt: Filter) -> np.ndarray:
        """Sorted unique int64 fids of the indexed points whose payload satisfies ``flt``."""
        out = [fid for fid, pl in self._payloads.items() if flt.matches(pl)]
        return np.array(sorted(out), dtype=np.int64)

    def __len__(self) -> int:
        return len(self._payloads)
