"""What an ingest is about to do to an existing collection, worked out before anything is written.

``simlookup ingest`` prints the plan with ``--dry-run`` and, without ``--yes``, refuses a run that would remove
points (rows gone from the source) or drop indexes (kinds left out of ``--index``, Qdrant left out or moved to
another engine): a typo in ``--limit`` or ``--index`` must not wipe a collection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ingest.options import IngestOptions
from retrieval.collection import Collection, CollectionManifest
from retrieval.errors import SimlookupError
from retrieval.settings import Settings
from retrieval.stores import QDRANT_INDEX


class GuardError(SimlookupError):
    """An ingest that would remove points or drop indexes, refused without ``--yes``."""


@dataclass
class IngestPlan:
    """Counts per index of what the ingest will do to the collection (removals are those known before
    encoding: rows rejected while encoding are removed too, and reported in the summary)."""

    name: str
    exists: bool
    rows: int
    indexes: list[str]
    added_indexes: list[str] = field(default_factory=list)
    dropped_indexes: list[str] = field(default_factory=list)
    current: dict[str, int] = field(default_factory=dict)  # points each existing index holds now
    new: int = 0  # source ids the collection does not hold yet
    removed: dict[str, int] = field(default_factory=dict)  # points each existing index will lose
    # Qdrant moving to another engine: {"from": "edge", "to": "local"} (its old collection is deleted)
    qdrant_move: dict[str, str] = field(default_factory=dict)
    qdrant_was: str | None = None  # the engine of the existing collection's Qdrant index, if it has one

    @property
    def destructive(self) -> bool:
        """Whether the run removes points or drops an index."""
        return bool(self.dropped_indexes) or any(self.removed.values())

    def describe(self) -> str:
        """One paragraph for people."""
        if not self.exists:
            return f"ingest creates collection {self.name!r} with {self.rows} rows in {self.indexes}"
        parts = [f"collection {self.name!r} ({', '.join(f'{k}: {v}' for k, v in self.current.items())} points)"]
        parts.append(f"{self.rows} rows read, {self.new} of them new")
        if any(self.removed.values()):
            parts.append("removes " + ", ".join(f"{n} from {k}" for k, n in self.removed.items() if n))
        kinds = [i for i in self.dropped_indexes if i != QDRANT_INDEX]
        if kinds:
            parts.append(f"drops indexes {kinds} (their data is deleted)")
        if self.qdrant_move:
            parts.append(
                f"Qdrant moves from {self.qdrant_move['from']} to {self.qdrant_move['to']}: the "
                f"{self.qdrant_move['from']} collection {self.name!r} ({self.current.get(QDRANT_INDEX, '?')} points) "
                "would be deleted"
            )
        elif QDRANT_INDEX in self.dropped_indexes:
            parts.append(
                f"drops Qdrant: the {self.qdrant_was} collection {self.name!r} "
                f"({self.current.get(QDRANT_INDEX, '?')} points) would be deleted"
            )
        if self.added_indexes:
            parts.append(f"adds indexes {self.added_indexes}")
        return "; ".join(parts)

    def refusal(self, append: bool) -> str:
        """Why a guarded ingest (no ``--yes``) stopped, and the flags that would avoid each loss (``--append``
        only where points would be removed: it keeps points, not indexes)."""
        avoid = []
        if any(self.removed.values()) and not append:
            avoid.append("--append keeps the points the source no longer has")
        kinds = [i for i in self.dropped_indexes if i != QDRANT_INDEX]
        if kinds:
            keep = [i for i in self.indexes if i != QDRANT_INDEX] + kinds
            avoid.append(f"--index {','.join(keep)} keeps {', '.join(kinds)}")
        if QDRANT_INDEX in self.dropped_indexes and self.qdrant_was:
            avoid.append(f"--qdrant {self.qdrant_was} keeps the Qdrant collection where it is")
        text = f"{self.describe()}: nothing was changed; re-run with --yes to do it"
        return text + (f" (to avoid it: {'; '.join(avoid)})" if avoid else "")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "destructive": self.destructive, "text": self.describe()}


def make_plan(
    settings: Settings,
    opts: IngestOptions,
    ds: Any,
    old: CollectionManifest | None,
    index_groups: list[list[str]],
    qdrant_settings: Settings,
) -> IngestPlan:
    """The plan of this ingest: opens the existing collection read-only, changes nothing."""
    indexes = [i for group in index_groups for i in group]
    plan = IngestPlan(name=opts.name, exists=old is not None, rows=len(ds), indexes=indexes)
    if old is None:
        plan.added_indexes = list(indexes)
        return plan
    new_mode = qdrant_settings.qdrant.mode if QDRANT_INDEX in indexes else None
    plan.added_indexes = [i for i in indexes if i not in old.indexes]
    plan.dropped_indexes = [i for i in old.indexes if i not in indexes]
    if QDRANT_INDEX in old.indexes:
        plan.qdrant_was = old.qdrant_mode
    if QDRANT_INDEX in old.indexes and QDRANT_INDEX in indexes and old.qdrant_mode != new_mode:
        plan.dropped_indexes.append(QDRANT_INDEX)  # the old engine's collection: the new one starts empty
        plan.qdrant_move = {"from": str(old.qdrant_mode), "to": str(new_mode)}
    source = {str(v) for v in ds["id"]} if "id" in ds.column_names else set()
    space = next(iter(old.vectors))
    # every index of a collection holds the same ids (verify checks it): read them from one, a FAISS kind when
    # there is one (a read-only FAISS open writes nothing; opening a Qdrant Edge shard rewrites files of its own)
    order = sorted(old.indexes, key=lambda i: i == QDRANT_INDEX)
    with Collection(settings, opts.name, read_only=True, manifest=old, check_counts=False) as coll:
        ids: set[str] | None = None
        for index in order:
            try:
                ids = coll.store(index, space).ids()
                break
            except SimlookupError:
                continue  # a store that cannot be opened: the ingest rewrites it (verify reports it)
    if ids is None:
        return plan
    plan.new = len(source - ids)
    for index in old.indexes:
        plan.current[index] = len(ids)
        if index not in plan.dropped_indexes:
            plan.removed[index] = 0 if opts.append else len(ids - source)
    return plan
