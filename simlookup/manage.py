"""The ``simlookup`` commands that manage collections: collections, drop, export, tune, compact, build-keyword."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from retrieval.errors import SimlookupError
from simlookup.cli_util import emit as _emit
from simlookup.cli_util import settings as _settings


def cmd_collections(args: argparse.Namespace) -> int:
    from retrieval.catalog import list_described

    s = _settings(args)
    rows = list_described(s)
    head = f"{'name':<20} {'count':>9} {'dim':>5} {'disk MB':>9}  complete  {'last ingest':<25}  indexes / model"
    lines = [head]
    for c in rows:
        if "error" in c:
            lines.append(f"{c['name']:<20} UNREADABLE: {c['error']}")
            continue
        state = {"complete": "yes", "ingest running": "running", "interrupted": "stopped"}.get(c["state"], "NO")
        count = c["count"] if c["complete"] else "?"  # an ingest writes the count when it ends
        lines.append(
            f"{c['name']:<20} {count:>9} {c['dim'] or '-':>5} {c['disk_bytes'] / 1e6:>9.1f}  "
            f"{state:<8}  {c['last_ingest'] or '-':<25}  {','.join(map(_tiered(c), c['indexes']))} / {c['model']}"
        )
    lines += [f"{c['name']}: {c['state_message']}" for c in rows if c.get("state_message")]
    if not rows:
        lines = [f"no collections in {s.data_dir}"]
    _emit(args, {"collections": rows}, "\n".join(lines))
    return 0


def _tiered(c: dict[str, Any]) -> Callable[[str], str]:
    """An index's name for the collections table: the Qdrant one with its memory tier when not the default
    (``qdrant(scalar,on_disk)``)."""
    tier = c.get("qdrant_tier") or {}
    parts = [p for p in (tier.get("quantization", "none"), "on_disk" if tier.get("on_disk") else "none") if p != "none"]
    return lambda i: f"{i}({','.join(parts)})" if i == "qdrant" and parts else i


def cmd_drop(args: argparse.Namespace) -> int:
    from retrieval.catalog import drop_collection, owned_paths, resolve

    s = _settings(args)
    m, notes = resolve(s, args.name)
    if not args.yes:
        what = [str(p) for p in owned_paths(s, m)]
        if m.qdrant_mode in ("server", "local") and "qdrant" in m.indexes:
            what.append(f"qdrant {m.qdrant_mode} collection {m.name}")
        doc = {"name": m.name, "would_remove": what, "dropped": False, "notes": notes}
        text = f"would delete collection {m.name!r}: " + ", ".join(what) + "\nre-run with --yes to delete"
        _emit(args, doc, "\n".join([*notes, text]))
        return 1
    rep = drop_collection(s, args.name)
    removed = list(rep.removed)
    if args.cache and notes:
        rep.notes.append("--cache: the embedding cache shards are found from the manifest, which is unreadable: kept")
    elif args.cache:
        import shutil

        from ingest.cache import cache_dirs

        for d in cache_dirs(s.data_dir, [sp.fingerprint for sp in m.vectors.values()], m.corpus_fingerprint):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
    doc = {**rep.to_dict(), "removed": removed, "dropped": True}
    text = f"dropped collection {m.name!r} ({rep.freed_bytes / 1e6:.1f} MB): " + ", ".join(removed)
    _emit(args, doc, "\n".join([*rep.notes, text]))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from retrieval.export import export_collection

    s = _settings(args)
    res = export_collection(s, args.name, Path(args.path), force=args.force, index=args.index, target=args.target)
    for w in res.warnings:
        print(f"simlookup: warning: {w}", file=sys.stderr)
    text = (
        f"exported {res.count} points ({res.dim}-d {res.metric}) of {res.name!r} from its {res.index} index to "
        f"{res.path} in {res.seconds:.1f} s; take them back with: simlookup ingest {res.path} --name NAME "
        "--vector-column vector --payload-column payload --id-column id"
    )
    _emit(args, res.to_dict(), text)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    import numpy as np

    from retrieval.collection import Collection

    s = _settings(args)
    with _alone(s, args.name, "tune"), Collection(s, args.name, read_only=False) as coll:
        m = coll.manifest
        target = args.target or ("text" if m.modality == "text" else "image")
        indexes = [i for i in args.index.split(",") if i] if args.index else list(m.indexes)
        for index in indexes:
            coll.store(index, target)  # an index the collection lacks: a clear error before any work
        queries = None
        if args.queries:
            path = Path(args.queries)
            if not path.is_file():
                raise SimlookupError(f"--queries {path}: no such file (give a text file, one query a line, or .npy)")
            if path.suffix == ".npy":
                try:
                    queries = np.load(path, allow_pickle=False)
                except (ValueError, OSError, EOFError) as e:
                    raise SimlookupError(f"--queries {path}: not a readable numeric .npy array ({e})") from e
            else:
                from ingest.corpora.files import text_lines
                from retrieval.retriever import Retriever

                try:
                    lines = [t for t in text_lines(path.read_text(encoding="utf-8")) if t.strip()]
                except UnicodeDecodeError as e:
                    raise SimlookupError(f"--queries {path}: not UTF-8 text, one query a line ({e})") from e
                if not lines:
                    raise SimlookupError(f"--queries {path}: no queries in it (one query a line)")
                with Retriever(s, args.name) as r:
                    queries = np.stack([r.encode_query(t, "text", target) for t in lines])
        done = coll.tune(indexes, target=args.recall, k=args.k, queries=queries, min_points=100)
        coll.save()
    lines_out = [
        f"{key}: {op['params']} recall@{op['k']} {op['recall']:.3f} "
        + ("reaches" if op["reached"] else "only within the sampling margin of" if op["recall"] >= op["target"]
           else "DOES NOT reach")
        + f" {op['target']} (p50 {op['p50_ms']:.2f} ms, {op['sample']} queries, {op['seconds']:.1f} s)"
        + ("" if op["reached"] else f"; {op['advice']}")
        for key, op in done.items()
    ] or ["nothing to tune (flat is exact; fewer than 100 points keep the built-in defaults)"]
    _emit(args, {"name": args.name, "tuned": done}, "\n".join(lines_out))
    return 0


@contextmanager
def _alone(s: Any, name: str, command: str) -> Iterator[None]:
    """A whole-collection write (compact, build-keyword, tune) refused while another process writes the collection:
    said so, naming the process (an ingest's, when one is under way), not the store's generic lock message."""
    from retrieval.errors import StoreLockedError

    try:
        yield
    except StoreLockedError as exc:
        from retrieval.catalog import writer_busy

        raise StoreLockedError(writer_busy(s, name, command) or str(exc)) from None


def cmd_compact(args: argparse.Namespace) -> int:
    from retrieval.collection import Collection

    s = _settings(args)
    with _alone(s, args.name, "compact"), Collection(s, args.name, read_only=False) as coll:
        spaces = {target: r.to_dict() for target, r in coll.compact().items()}
    keys = ("rows_before", "rows_after", "bytes_before", "bytes_after", "seconds")
    doc: dict[str, Any] = {"name": args.name, **{k: sum(sp[k] for sp in spaces.values()) for k in keys}}
    doc["spaces"] = spaces
    lines = [
        f"{args.name}/{t}: {sp['rows_before']} → {sp['rows_after']} vector rows, "
        f"{sp['bytes_before'] / 1e6:.1f} → {sp['bytes_after'] / 1e6:.1f} MB in {sp['seconds']:.2f} s"
        if sp["compacted"]
        else f"{args.name}/{t}: nothing to reclaim ({sp['rows_before']} vector rows, all live)"
        for t, sp in spaces.items()
    ]
    _emit(args, doc, "\n".join(lines) or f"{args.name}: no FAISS index, nothing to compact")
    return 0


def cmd_build_keyword(args: argparse.Namespace) -> int:
    from retrieval.collection import Collection

    s = _settings(args)
    with _alone(s, args.name, "build-keyword"), Collection(s, args.name, read_only=False) as coll:
        done = coll.build_keyword()
    _emit(
        args,
        done,
        f"{args.name}: keyword leg built over {done['documents']} documents (average {done['avgdl']} tokens) "
        f"for {', '.join(done['indexes']) or 'no index'} in {done['seconds']:.2f} s",
    )
    return 0


def add_manage_commands(
    add: Callable[[str, Any, str], argparse.ArgumentParser], _bounded: Callable[[int, int | None], Any]
) -> None:
    """Register these commands on the ``simlookup`` parser (``add(name, fn, help)`` adds one with --json)."""
    sp = add("tune", cmd_tune, "re-tune the default query settings of a collection's indexes to a recall target")
    sp.add_argument("name", help="collection name")
    sp.add_argument("--recall", type=float, default=0.95, help="recall@k target, by id overlap (default 0.95)")
    sp.add_argument("-k", "--k", type=_bounded(1, 1000), default=10, help="k of the recall target (default 10)")
    sp.add_argument("--index", help="indexes to tune, comma-separated (default: all)")
    sp.add_argument("--target", choices=["text", "image", "caption"], help="vector space (default: the main one)")
    sp.add_argument("--queries", help="queries to tune on: a text file (one a line, encoded by the collection's "
                    "model) or an .npy of vectors (default: the collection's own points, moved off themselves)")
    add("collections", cmd_collections, "list collections: model, dim, count, indexes, disk, last ingest")
    sp = add("drop", cmd_drop, "delete a collection: every index, its Qdrant collection, manifest, rejects")
    sp.add_argument("name", help="collection name")
    sp.add_argument("--yes", action="store_true", help="really delete (without it: print what would go)")
    sp.add_argument("--cache", action="store_true", help="also delete its embedding cache shards")
    sp = add("export", cmd_export, "write a collection's points (id, vector, payload) to a parquet file")
    sp.add_argument("name", help="collection name")
    sp.add_argument("path", help="the .parquet file to write (refused if it exists, unless --force)")
    sp.add_argument("--force", action="store_true", help="replace an existing file")
    sp.add_argument("--index", help="the index to read (default: flat, else another FAISS kind, else qdrant)")
    sp.add_argument("--target", choices=["text", "image", "caption"], help="vector space (default: text or image)")
    sp = add("compact", cmd_compact, "reclaim the FAISS vector rows of replaced and deleted points")
    sp.add_argument("name", help="collection name")
    sp = add("build-keyword", cmd_build_keyword, "build (or rebuild) a text collection's keyword leg (BM25) for "
             "keyword and hybrid search, from its stored texts")
    sp.add_argument("name", help="collection name")
