"""The ingestion job: read a corpus, embed each shard once (cached), write it to every store together.

Order: read the source and check everything that could refuse the ingest (columns, ids, IVF/PQ trainability,
the existing collection's model) before anything is written; then open the stores, and only then record the
collection manifest. Pipeline: the main thread reads and encodes shard after shard (or loads them from the
embedding cache) while a writer thread upserts finished shards into every FAISS index and the Qdrant
collection, so writes overlap encoding. Points whose rows left the source are then deleted (unless
``append``), and IVF/PQ training and Qdrant Edge HNSW (optimize) run once at the end.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Generator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ingest.cache import EmbeddingCache, Shard
from ingest.corpora import get_corpus
from ingest.corpora.files import text_lines
from ingest.corpora.vectors import VectorCorpus
from ingest.keyword_leg import keyword_spec
from ingest.options import IngestOptions
from ingest.plan import GuardError, make_plan
from ingest.rows import encode_shard, reject_unstorable, text_of
from retrieval.catalog import check_droppable, drop_collection, drop_index
from retrieval.collection import (
    ENCODER_OF,
    Collection,
    CollectionManifest,
    VectorSpace,
    load_collection,
    space_names,
)
from retrieval.collection_manifest import EXTERNAL, manifest_path
from retrieval.disk import folder_bytes
from retrieval.encoders import load_encoder  # also a re-export: `from ingest.job import load_encoder` works
from retrieval.errors import CorruptManifestError, InvalidInputError, SimlookupError, StoreNotFoundError
from retrieval.names import check_name
from retrieval.settings import Settings
from retrieval.stores import QDRANT_INDEX, VectorStore
from retrieval.stores.faiss_params import FaissBuildParams
from retrieval.stores.manifest import atomic_write, now_iso

log = logging.getLogger(__name__)
@dataclass
class IngestSummary:
    """The final report of one ingest run (``--json`` prints it)."""

    name: str
    corpus: str
    rows_read: int = 0
    ingested: int = 0
    rejected: int = 0
    rejects_file: str = ""
    removed: int = 0
    encoded_rows: int = 0
    cached_rows: int = 0
    indexes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    sizes_bytes: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)  # what the run was to do (all of it with --dry-run)
    dropped: list[str] = field(default_factory=list)  # data of indexes the collection no longer has, removed
    build_seconds: dict[str, float] = field(default_factory=dict)  # per index ("ivf", "qdrant"; "hnsw/image"...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["IngestOptions", "IngestSummary", "load_encoder", "rejects_of", "run_ingest", "store_sizes"]


BUILD_WORK = {"ivf": "IVF training", "ivfpq": "IVF-PQ training", "ivf_sq8": "IVF-SQ8 training",
              "hnsw_sq8": "HNSW-SQ8 training and graph build", QDRANT_INDEX: "Qdrant HNSW build (optimize)"}


class _BuildReport:
    """Collection.build's report: each index's build seconds into the summary, and for the slow ones (IVF
    training, Qdrant's optimize) a start and a done line on stderr unless progress is off."""

    def __init__(self, summary: IngestSummary, progress: bool) -> None:
        self.summary = summary
        self.progress = progress

    def __call__(self, index: str, space: str, seconds: float | None) -> None:
        key = index if space in ("text", "image") else f"{index}/{space}"
        work = BUILD_WORK.get(index)
        if seconds is not None:
            self.summary.build_seconds[key] = round(seconds, 3)
        if work is None or not self.progress:
            return
        if seconds is None:
            print(f"build: {key}: {work} ...", file=sys.stderr, flush=True)
        else:
            print(f"build: {key}: {work} done in {seconds:.1f} s", file=sys.stderr, flush=True)


class _Writer(threading.Thread):
    """Consumes encoded shards and upserts them into every store of their space."""

    def __init__(self, coll: Collection, bar: Any) -> None:
        super().__init__(daemon=True, name="simlookup-writer")
        self.coll = coll
        self.q: queue.Queue[tuple[str, Shard] | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.busy_s = 0.0
        self.bar = bar
        self.written: dict[str, set[str]] = {space: set() for space in coll.manifest.vectors}  # for the pruning

    def run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is not None:
                continue
            space, shard = item
            self.written[space].update(shard.ids)
            t0 = time.perf_counter()
            try:
                if shard.ids:  # every index of the space, Qdrant first (Collection.each_index)
                    self.coll.upsert(shard.ids, shard.vectors, shard.payloads, target=space)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
                self.error = exc
            self.busy_s += time.perf_counter() - t0
            self.bar.update(len(shard.ids))

    def put(self, space: str, shard: Shard) -> None:
        if self.error is not None:
            raise self.error
        self.q.put((space, shard))


def run_ingest(settings: Settings, opts: IngestOptions, encoders: dict[str, Any] | None = None) -> IngestSummary:
    """Run one ingest; safe to re-run (idempotent) and to resume after a crash. A refused ingest writes nothing."""

    t_start = time.perf_counter()
    summary = IngestSummary(name=opts.name, corpus=opts.corpus)
    if not opts.progress:
        import datasets

        datasets.disable_progress_bars()  # --no-progress: no "Generating train split" bars from the readers either
    corpus = get_corpus(
        opts.corpus,
        text_column=opts.text_column,
        id_column=opts.id_column,
        image_column=opts.image_column,
        vector_column=opts.vector_column,
        payload_column=opts.payload_column,
        dim=opts.dim,
        metric=opts.metric,
    )
    ds = corpus.load(limit=opts.limit)
    corpus_fp = corpus.fingerprint()
    spec = corpus.spec
    names = space_names(spec.modality, "caption" in ds.column_names and spec.modality == "image")
    summary.rows_read = len(ds)
    summary.seconds["read"] = time.perf_counter() - t_start
    use_qdrant = opts.qdrant != "none"
    qs = settings.with_qdrant_mode(opts.qdrant) if use_qdrant else settings
    old = _existing(settings, opts.name)
    _check_source(settings, opts, ds, None if isinstance(corpus, VectorCorpus) else names[0], old)
    plan = make_plan(settings, opts, ds, old, [opts.indexes, [QDRANT_INDEX] if use_qdrant else []], qs)
    summary.plan = plan.to_dict()
    if opts.dry_run:
        return summary
    if opts.guard and plan.destructive:
        raise GuardError(plan.refusal(opts.append))
    if old is not None:
        check_droppable(settings, old, plan.dropped_indexes)  # an Edge shard a service holds open: refused

    encoders = dict(encoders or {})
    if isinstance(corpus, VectorCorpus):
        spaces = [_external_space(settings, opts, corpus, encoders)]
        encoders = {EXTERNAL: VectorInput(spaces[0])}
    else:
        for n in names:
            if ENCODER_OF[n] not in encoders:
                encoders[ENCODER_OF[n]] = load_encoder(settings, ENCODER_OF[n])
        spaces = [
            VectorSpace(
                name=n,
                encoder=ENCODER_OF[n],
                model=settings.text_model if ENCODER_OF[n] == "text" else settings.clip.arch,
                fingerprint=encoders[ENCODER_OF[n]].fingerprint,
                dim=encoders[ENCODER_OF[n]].dim,
            )
            for n in names
        ]
    _check_compatible(opts.name, old, spec.modality, spaces)

    # every check passed: the manifest to be is known, but written only once every store has opened
    manifest = _new_manifest(opts, spec, corpus_fp, spaces, old, qs if use_qdrant else None)
    manifest.keyword = keyword_spec(settings, ds, spec.modality, old, opts.append)  # before any store opens
    coll = Collection(settings, opts.name, read_only=False, manifest=manifest)
    t0 = time.perf_counter()
    mpath = manifest_path(settings.data_dir, opts.name)
    before = mpath.read_bytes() if mpath.exists() else None  # put back when every row is rejected
    rejected_all = False
    try:
        stores: dict[str, list[tuple[str, VectorStore]]] = {
            sp.name: [(kind, coll.store(kind, sp.name, create=True)) for kind in manifest.indexes] for sp in spaces
        }
        summary.seconds["open"] = time.perf_counter() - t0
        coll.save()  # complete=False until the run ends
        current = _pipeline(settings, opts, ds, corpus_fp, spaces, encoders, coll, summary)
        rejected_all = bool(summary.rows_read) and not any(current.values())
        if rejected_all:
            raise _all_rejected(opts, summary, old if before is not None else None)
        if not opts.append:
            summary.removed = _remove_stale(spaces, stores, current)
        t_build = time.perf_counter()
        coll.build(_BuildReport(summary, opts.progress))
        coll.flush()
        summary.seconds["build"] = time.perf_counter() - t_build
        first = stores[spaces[0].name]
        summary.counts = {k: st.count() for k, st in first}
        summary.ingested = max(summary.counts.values(), default=0)
        summary.indexes = [k for k, _ in first]
        summary.sizes_bytes = store_sizes(first)
    finally:
        try:
            coll.close()
        except SimlookupError as exc:
            log.warning("%s", exc)
        if rejected_all:
            try:
                _write_nothing(settings, opts.name, before, Path(summary.rejects_file))
            except (SimlookupError, OSError) as exc:
                log.warning("could not undo the ingest that wrote nothing: %s", exc)
    manifest.count = summary.ingested
    manifest.rejected = summary.rejected
    manifest.complete = True
    manifest.updated = now_iso()
    coll.save()
    if old is not None:  # the data of indexes this ingest no longer writes (kinds left out, another Qdrant engine)
        for index in plan.dropped_indexes:
            summary.dropped += drop_index(settings, old, index)
    summary.seconds["total"] = time.perf_counter() - t_start
    return summary


def _all_rejected(opts: IngestOptions, summary: IngestSummary, old: CollectionManifest | None) -> InvalidInputError:
    """The error of an ingest whose every row was rejected: the reasons counted, the rejects file, what stays."""
    reasons = Counter(r["reason"] for r in rejects_of_file(Path(summary.rejects_file)))
    said = "; ".join(f"{why[:100]!r} x{n}" for why, n in reasons.most_common(3))
    kept = (
        f"collection {opts.name!r} keeps the {old.count} points and the state it had"
        if old is not None
        else f"collection {opts.name!r} was not created"
    )
    return InvalidInputError(
        f"all {summary.rows_read} rows of {opts.corpus} were rejected ({said}): each row and its reason are in "
        f"{summary.rejects_file}; nothing was written: {kept}"
    )


def _write_nothing(settings: Settings, name: str, before: bytes | None, rejects: Path) -> None:
    """Undo an ingest that wrote no point: a collection it created is dropped (its rejects file stays), an
    existing one gets its manifest back."""
    if before is not None:
        atomic_write(manifest_path(settings.data_dir, name), lambda tmp: Path(tmp).write_bytes(before))
        return
    kept = rejects.read_bytes() if rejects.exists() else None
    drop_collection(settings, name)
    if kept is not None:
        rejects.write_bytes(kept)


def store_sizes(stores: list[tuple[str, VectorStore]]) -> dict[str, int]:
    """Bytes on disk per index; the point store every FAISS kind shares is reported once, as ``points``.

    A FAISS kind counts its own folder (index.faiss, manifest); Qdrant its whole store.
    """
    out: dict[str, int] = {}
    for k, st in stores:
        info = st.info()
        if "points_bytes" in info:
            out["points"] = int(info["points_bytes"])
            folder = Path(info["path"])
            out[k] = folder_bytes(folder, apparent=True)
        else:
            out[k] = int(info.get("disk_bytes", 0) or 0)
    return out


def _existing(settings: Settings, name: str) -> CollectionManifest | None:
    """The collection this ingest updates, if any; a corrupt manifest counts as none (this ingest repairs it)."""
    try:
        return load_collection(settings.data_dir, name)
    except StoreNotFoundError:
        return None
    except CorruptManifestError as exc:
        log.warning("%s; this ingest rewrites it", exc)
        return None


def _check_source(
    settings: Settings, opts: IngestOptions, ds: Any, first_space: str | None, old: CollectionManifest | None
) -> None:
    """Refuse, before anything is written, a source no store could take whole (``first_space`` None: the rows
    carry their own vectors)."""
    col = first_space if first_space is not None and first_space in ds.column_names else None
    usable = len(ds) if col is None or first_space != "text" else sum(text_of(v) is not None for v in ds[col])
    if opts.append and old is not None:
        usable = max(usable, old.count)
    need = {k: FaissBuildParams.from_settings(k, settings.faiss).min_train_points(usable) for k in opts.indexes}
    untrainable = [k for k in opts.indexes if usable < need[k]]
    if untrainable:
        kind = untrainable[0]
        others = [k for k in opts.indexes if k not in untrainable] or ["flat"]
        raise InvalidInputError(
            f"the {kind} index needs at least {need[kind]} points to train, and this source gives {usable}: "
            f"leave it out (e.g. --index {','.join(others)}), or ingest more rows"
        )


def _check_compatible(
    name: str, old: CollectionManifest | None, modality: str, spaces: list[VectorSpace]
) -> None:
    """Refuse to write vectors of another model, tier or dimension into an existing collection."""
    if old is None:
        return
    if old.modality != modality:
        raise InvalidInputError(
            f"collection {name!r} holds {old.modality} vectors and this source is {modality}: "
            "ingest it under another --name"
        )
    for sp in spaces:
        was = old.vectors.get(sp.name)
        if was is not None and EXTERNAL in (was.encoder, sp.encoder) and (
            was.fingerprint != sp.fingerprint or was.dim != sp.dim or was.metric != sp.metric
        ):
            raise InvalidInputError(
                f"collection {name!r} holds {was.dim}-d {was.metric} vectors of {was.fingerprint} and this ingest "
                f"brings {sp.dim}-d {sp.metric} vectors of {sp.fingerprint}: ingest under another --name, or give "
                "the collection's own --model, --metric and --dim; nothing was changed"
            )
        if was is not None and (was.fingerprint != sp.fingerprint or was.dim != sp.dim):
            raise InvalidInputError(
                f"collection {name!r} was embedded by {was.fingerprint} ({was.dim}-d) and this ingest would use "
                f"{sp.fingerprint} ({sp.dim}-d): use the same model settings (SIMLOOKUP_TEXT_MODEL, "
                "SIMLOOKUP_TEXT_QUANTIZE, SIMLOOKUP_CLIP__*), or ingest under another --name; nothing was changed"
            )


class VectorInput:
    """The "encoder" of an external space: rows carry their vectors (``ingest.rows.vector_rows`` checks them), so
    the job keeps one path (cache, writer, pruning, rejects); its fingerprint, the space's, keys the cache."""

    def __init__(self, space: VectorSpace) -> None:
        self.dim = space.dim
        self.fingerprint = space.fingerprint


def _external_space(
    settings: Settings, opts: IngestOptions, corpus: VectorCorpus, encoders: dict[str, Any]
) -> VectorSpace:
    """The space of vectors a user brought: dimension and metric from the source (``VectorCorpus``), model from
    --model (loaded once to check its dimension and fingerprint it)."""
    assert corpus.dim is not None  # set by load()
    dim = corpus.dim
    fingerprint = f"{EXTERNAL}:vectors:{dim}"
    if opts.model is not None:
        enc = encoders.get("text") or load_encoder(settings, "text", opts.model)
        if enc.dim != dim:
            raise InvalidInputError(
                f"--model {opts.model} makes {enc.dim}-d vectors but {opts.corpus} holds {dim}-d vectors: name the "
                "model that made them, or leave --model out (the collection then answers vector queries only)"
            )
        fingerprint = enc.fingerprint
    model, metric = opts.model or EXTERNAL, corpus.metric
    return VectorSpace(name="text", encoder=EXTERNAL, model=model, fingerprint=fingerprint, dim=dim, metric=metric)


def _remove_stale(
    spaces: list[VectorSpace], stores: dict[str, list[tuple[str, VectorStore]]], current: dict[str, set[str]]
) -> int:
    """Delete the points whose rows are no longer in the source (or are now rejected); how many per index."""
    every = set().union(*current.values()) if current else set()
    removed = 0
    for sp in spaces:
        for kind, st in stores[sp.name]:
            if kind == QDRANT_INDEX and sp is not spaces[0]:
                continue  # one Qdrant collection holds every space of a point: pruned once
            keep = every if kind == QDRANT_INDEX else current[sp.name]
            stale = sorted(st.ids() - keep)
            if stale:
                st.delete(stale)
            if sp is spaces[0]:
                removed = max(removed, len(stale))
    return removed


def _new_manifest(
    opts: IngestOptions,
    spec: Any,
    corpus_fp: str,
    spaces: list[VectorSpace],
    old: CollectionManifest | None,
    qs: Settings | None,
) -> CollectionManifest:
    """The manifest of the collection being written (complete=False until the run ends)."""
    indexes = list(opts.indexes) + ([QDRANT_INDEX] if qs is not None else [])
    m = CollectionManifest(
        name=opts.name,
        corpus=opts.corpus,
        corpus_fingerprint=corpus_fp,
        modality=spec.modality,
        vectors={sp.name: sp for sp in spaces},
        indexes=indexes,
        qdrant_mode=qs.qdrant.mode if qs is not None else None,
        payload_indexes=dict(spec.payload_indexes),
        created=old.created if old is not None else now_iso(),
        uid=old.uid if old is not None else "",  # the same collection (a new one gets its uid when first saved)
        tuning=old.tuning if old is not None else {},  # kept; build() re-tunes an index whose count moved by half
        updated=now_iso(),
        ingest=opts.recorded(),  # the command that resumes it is printed whole
    )
    return m


def _pipeline(
    settings: Settings,
    opts: IngestOptions,
    ds: Any,
    corpus_fp: str,
    spaces: list[VectorSpace],
    encoders: dict[str, Any],
    coll: Collection,
    summary: IngestSummary,
) -> dict[str, set[str]]:
    """Encode (or load from the cache) and write every shard; returns the ids written per space."""
    from tqdm import tqdm

    n = len(ds)
    rejects_path = settings.data_dir / "rejects" / f"{opts.name}.jsonl"
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    summary.rejects_file = str(rejects_path)
    caches: dict[str, EmbeddingCache] = {
        sp.name: EmbeddingCache(settings.data_dir, encoders[sp.encoder].fingerprint, corpus_fp, sp.name)
        for sp in spaces
    }
    total = n * len(spaces)
    enc_bar = tqdm(total=total, desc="encode", unit="row", disable=not opts.progress, dynamic_ncols=True)
    write_bar = tqdm(total=total, desc="write ", unit="row", disable=not opts.progress, dynamic_ncols=True)
    writer = _Writer(coll, write_bar)
    writer.start()
    encode_s = 0.0
    rejects: list[dict[str, str]] = []
    ranges = [(start, min(n, start + opts.shard_size)) for start in range(0, n, opts.shard_size)]
    if settings.ingest.engine == "ray" and spaces[0].encoder != EXTERNAL:  # vectors brought: nothing to encode
        from ingest.ray_engine import ray_shards

        source = ray_shards(settings, opts, corpus_fp, spaces, caches, ranges)
    else:
        source = _local_shards(settings, ds, spaces, encoders, caches, ranges)
    try:
        while True:
            t0 = time.perf_counter()
            item = next(source, None)
            encode_s += time.perf_counter() - t0
            if item is None:
                break
            sp, shard, encoded_now = item
            shard = reject_unstorable(shard, sp.name)  # a shard cached before the 64-bit integer rule
            if encoded_now:
                summary.encoded_rows += shard.end - shard.start
            else:
                summary.cached_rows += shard.end - shard.start
            rejects += shard.rejects
            write_bar.update(shard.end - shard.start - len(shard.ids))
            enc_bar.update(shard.end - shard.start)
            writer.put(sp.name, shard)
    finally:
        source.close()
        writer.q.put(None)
        writer.join()
        enc_bar.close()
        write_bar.close()
    if writer.error is not None:
        raise writer.error
    with open(rejects_path, "w", encoding="utf-8") as f:
        for r in rejects:
            f.write(json.dumps(r) + "\n")
    summary.rejected = len({r["id"] for r in rejects if r.get("space") in ("text", "image")})
    summary.seconds["encode"] = encode_s
    summary.seconds["write"] = writer.busy_s
    return writer.written


def _local_shards(
    settings: Settings,
    ds: Any,
    spaces: list[VectorSpace],
    encoders: dict[str, Any],
    caches: Mapping[str, EmbeddingCache],
    ranges: list[tuple[int, int]],
) -> Generator[tuple[VectorSpace, Shard, bool], None, None]:
    """The local engine: (space, shard, encoded now?) in row order, from the cache or encoded in this process."""
    for start, end in ranges:
        rows: list[dict[str, Any]] | None = None
        for sp in spaces:
            shard = caches[sp.name].get(start, end)
            if shard is not None:
                yield sp, shard, False
                continue
            if rows is None:
                rows = ds.select(range(start, end)).to_list()
            shard = encode_shard(settings, sp, encoders[sp.encoder], rows, start)
            caches[sp.name].put(shard)
            yield sp, shard, True


def rejects_of(data_dir: Path, name: str) -> list[dict[str, str]]:
    """The rejects file of a collection, parsed."""
    p = data_dir / "rejects" / f"{check_name(name)}.jsonl"
    return rejects_of_file(p)


def rejects_of_file(p: Path) -> list[dict[str, str]]:
    """A rejects file, parsed ([] when there is none)."""
    if not p.exists():
        return []
    return [json.loads(line) for line in text_lines(p.read_text(encoding="utf-8")) if line.strip()]
