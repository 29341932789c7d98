"""A filter that empties a query's neighbourhood, judged the same way on every engine.

Under a filter correlated with the data (``{"region": {"$ne": the query's own}}``, a category living in one part
of the space) an approximate index returns k matches from the edge of where it looked, not the nearest ones:
IVF from its probed lists, an HNSW graph (FAISS or Qdrant) from wherever its walk out of the query's own
cluster lands, with nothing said. The sign: among the query's unfiltered nearest ``NEIGHBOURS``, far fewer
matches than a filter spread evenly over the data would leave there. Such a query is answered by exact search
over the matches instead.
"""

from __future__ import annotations

import numpy as np

NEIGHBOURS = 64  # the unfiltered neighbours a filtered query's neighbourhood is judged on
MIN_EXPECTED = 4.0  # matches an even filter would leave among them, below which the count tells nothing


def judged(matches: int, live: int, neighbours: int = NEIGHBOURS) -> bool:
    """Whether a filter of ``matches`` among ``live`` points leaves enough matches among ``neighbours`` (at least
    ``MIN_EXPECTED`` when spread evenly) for their count to tell anything: when not, no neighbour search is worth
    running."""
    return neighbours * matches / max(live, 1) >= MIN_EXPECTED


def emptied(held: np.ndarray, neighbours: int, matches: int, live: int) -> np.ndarray:
    """Per query, whether its ``neighbours`` unfiltered nearest points hold (``held``) fewer than half the matches
    an even filter would leave there (``neighbours × matches / live``); never where ``judged`` says the count
    tells nothing."""
    if not judged(matches, live, neighbours):
        return np.zeros(len(held), dtype=bool)
    return np.asarray(held) < 0.5 * neighbours * matches / max(live, 1)
