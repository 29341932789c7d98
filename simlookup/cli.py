"""``simlookup``, the command line: one ``cmd_*`` function per subcommand; ``--json`` prints one JSON document."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrieval.errors import SimlookupError
from retrieval.settings import Settings, redact_url
from simlookup.cli_util import emit as _emit
from simlookup.cli_util import settings as _settings
from simlookup.manage import add_manage_commands


def cmd_info(args: argparse.Namespace) -> int:
    from retrieval.catalog import qdrant_tier
    from retrieval.collection import scan_collections
    from retrieval.encoders.loader import load_encoder
    from retrieval.stores.qdrant_tier import Tier

    s = _settings(args)
    data: dict[str, Any] = {"settings": s.public()}
    model_line = f"text model: {s.text_model} (not loaded: `simlookup info --model` loads it for its dim)"
    if args.model:  # the model load costs seconds and a GB of RAM: only when asked
        enc = load_encoder(s, "text")
        data["text_model"] = {"name": s.text_model, "path": enc.path, "dim": enc.dim, "fingerprint": enc.fingerprint}
        model_line = f"text model: {s.text_model} dim={enc.dim} fingerprint={enc.fingerprint}"
    else:
        data["text_model"] = {"name": s.text_model}
    if s.qdrant.mode == "local":
        data["qdrant_note"] = (
            "qdrant-client local mode is brute force: HNSW, optimizer and quantization settings are ignored, "
            "and it slows down above 20,000 points"
        )
    good, broken = scan_collections(s.data_dir)
    data["collections"] = [
        {
            "name": c.name,
            "corpus": c.corpus,
            "count": c.count,
            "indexes": c.indexes,
            "complete": c.complete,
            # each tuned index's default setting and the recall@k it measured (retrieval.tuning)
            "tuned": {f"{i}/{sp}": {"params": op["params"], "recall": op["recall"], "reached": op["reached"]}
                      for sp, pts in c.tuning.items() for i, op in pts.items()},
            "qdrant_tier": qdrant_tier(s, c),  # quantization, on_disk as the engine recorded them (None: no Qdrant)
        }
        for c in good
    ] + [{"name": n, "error": why} for n, why in broken.items()]
    data["collections"].sort(key=lambda c: c["name"])
    lines = [
        f"data dir: {s.data_dir}",
        model_line,
        f"qdrant mode: {s.qdrant.mode}",
    ]
    lines += [
        f"collection {c['name']}: UNREADABLE: {c['error']}"
        if "error" in c
        else f"collection {c['name']}: {c['count']} points, indexes {c['indexes']}"
        + "".join(f"; {k} tuned {v['params']} recall {v['recall']:.3f}" for k, v in c.get("tuned", {}).items())
        + (f"; qdrant tier: {Tier.from_meta(c['qdrant_tier']).describe()}" if c.get("qdrant_tier") else "")
        for c in data["collections"]
    ]
    _emit(args, data, "\n".join(lines))
    return 0


def _version() -> str:
    from simlookup import __version__

    return __version__


def cmd_corpora(args: argparse.Namespace) -> int:
    from ingest.corpora import list_corpora

    _settings(args)  # validates the configuration like every command
    rows = list_corpora()
    text = "\n".join(
        f"{r['name']:<40} {'yes' if r['available'] else 'no ':<4} {r['description']}"
        + (f"\n{'':<45}({r['reason']})" if r["reason"] else "")
        for r in rows
    )
    _emit(args, {"corpora": rows}, text)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from ingest.job import IngestOptions, run_ingest

    s = _settings(args)
    opts = IngestOptions(
        corpus=args.corpus,
        name=args.name,
        indexes=[i for i in args.index.split(",") if i] if args.index else [],
        qdrant=args.qdrant,
        limit=args.limit,
        text_column=args.text_column,
        id_column=args.id_column,
        image_column=args.image_column,
        shard_size=args.shard_size,
        progress=not args.no_progress,
        append=args.append,
        guard=not args.yes,
        dry_run=args.dry_run,
        vector_column=args.vector_column,
        payload_column=args.payload_column,
        model=args.model,
        metric=args.metric,
        dim=args.dim,
    )
    s = s.with_ingest(
        engine=args.engine, ray_address=args.ray_address, workers=args.workers, gpus_per_worker=args.gpus_per_worker
    )
    summary = run_ingest(s, opts)
    d = summary.to_dict()
    if opts.dry_run:
        _emit(args, d, "dry run, nothing written: " + summary.plan["text"])
        return 0
    gone = f", {summary.removed} removed (no longer in the source)" if summary.removed else ""
    text = (
        f"the collection holds {summary.ingested} points from {summary.rows_read} rows read, in {summary.indexes} "
        f"({summary.rejected} rejected → {summary.rejects_file}{gone})\n"
        + "seconds: "
        + ", ".join(f"{k} {v:.2f}" for k, v in summary.seconds.items())
        + (" (build per index: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.build_seconds.items()) + ")")
        * bool(summary.build_seconds)
        + "\n"
        + "size on disk: "
        + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in summary.sizes_bytes.items())
        + ("".join(f"\nremoved the data of a dropped index: {p}" for p in summary.dropped))
    )
    _emit(args, d, text)
    return 0 if summary.ingested > 0 else 1


def cmd_search(args: argparse.Namespace) -> int:
    from simlookup.filter_args import parse_filter_args

    s = _settings(args)
    flt = parse_filter_args(args.filter)
    vector = _vector_arg(args.vector) if args.vector else None
    if sum(x is not None for x in (args.query, args.image, vector)) != 1:
        raise SimlookupError("give exactly one of a QUERY text, --image PATH and --vector")
    fusion = _fusion_args(s, args)
    url = _service_url(args, s)
    doc = _search_service(url, s, args, flt, vector) if url else _search_in_process(s, args, flt, vector, fusion)
    doc["mode"] = args.mode
    if fusion is not None:
        doc |= {"fusion": fusion.method, "alpha": fusion.alpha}
    how = f" · {args.mode}" * (args.mode != "dense") + (f" ({fusion.method}, α {fusion.alpha:g})" if fusion else "")
    lines = [f"{doc['index']}{how} · {len(doc['hits'])} hits · {doc['took_ms']:.1f} ms" + (f" · via {url}" * bool(url))]
    for i, h in enumerate(doc["hits"], 1):
        p = h["payload"]
        label = p.get("text") or p.get("caption") or p.get("file") or ""
        lines.append(f"{i:>3}. {h['score']:.4f}  {h['id']}  {label}")
    for w in doc.get("warnings") or []:
        print(f"simlookup: warning: {w}", file=sys.stderr)
    _emit(args, doc, "\n".join(lines))
    return 0


def _fusion_args(s: Settings, args: argparse.Namespace) -> Any:
    """--mode / --fusion / --alpha checked: the Fusion of a hybrid search (the settings' defaults for what is not
    given), None for the other modes; keyword and hybrid searches take a QUERY text."""
    if args.mode != "dense" and args.query is None:
        raise SimlookupError(f"--mode {args.mode} searches by a QUERY text (the keyword leg reads words), not by "
                             "--image or --vector")
    if args.mode != "hybrid":
        if args.fusion is not None or args.alpha is not None:
            raise SimlookupError(f"--fusion and --alpha tune a hybrid search (--mode hybrid), not a {args.mode} one")
        return None
    from retrieval.keyword.fusion import Fusion

    ks = s.keyword
    return Fusion(args.fusion or ks.fusion, ks.alpha if args.alpha is None else args.alpha, ks.rrf_k)


def _search_in_process(
    s: Settings, args: argparse.Namespace, flt: Any, vector: list[float] | None, fusion: Any = None
) -> dict[str, Any]:
    import numpy as np

    from retrieval.retriever import Retriever
    from retrieval.stores import SearchParams

    params = SearchParams(
        nprobe=args.nprobe,
        hnsw_ef=args.ef,
        exact=args.exact,
        rerank=args.rerank_factor if args.rerank_factor is not None else (10 if args.rerank else None),
        oversampling=args.oversampling,
        rescore=False if args.no_rescore else None,
    )
    with Retriever(s, args.name) as r:
        if args.image:
            res = r.search_image(
                args.image, index=args.index, k=args.k, filter=flt, params=params, target=args.target or "image"
            )
        elif vector is not None:
            target = args.target or ("text" if r.manifest.modality == "text" else "image")
            vec = np.asarray(vector, dtype=np.float32)
            res = r.search_vector(vec, index=args.index, k=args.k, filter=flt, params=params, target=target)
        else:
            res = r.search_text(args.query, index=args.index, k=args.k, filter=flt, params=params, target=args.target,
                                mode=args.mode, fusion=fusion)
        doc = res.to_dict()
        missing = _missing_fields(r, res.index, res.target, flt) if flt else []
    if missing:
        doc["warnings"] = [*doc.get("warnings", []), *missing]
    return doc


def _missing_fields(r: Any, index: str, target: str, flt: Any) -> list[str]:
    """A warning per field the filter names that no point of the collection has (a misspelt field gives 0 hits
    and no other sign), whatever the filter's form and the hits: asked of the searched index (FAISS from its
    payload index, Qdrant by an exact count); a store that cannot tell asks one of the collection's FAISS indexes
    (same points and payloads); else nothing is said."""
    from retrieval.stores import FAISS_KINDS

    fields = sorted(flt.fields)
    faiss = [i for i in r.manifest.indexes if i in FAISS_KINDS and i != index][:1]
    for i in [index, *faiss]:
        known = {f: r.store(i, target).has_field(f) for f in fields}
        if None not in known.values():
            return [
                f"no point of collection {r.manifest.name!r} has a field {f!r} (named in the filter): check its "
                "spelling and case; nested fields are dotted paths (meta.lang)"
                for f, ok in known.items()
                if not ok
            ]
    return []


def _search_service(
    url: str, s: Settings, args: argparse.Namespace, flt: Any, vector: list[float] | None
) -> dict[str, Any]:
    from simlookup.service import ServiceClient

    client = ServiceClient(url, s.api.key.get_secret_value() if s.api.key else None)
    spec = flt.to_dict() or None  # the canonical JSON form of the filter language: POST /search parses it back
    if args.image:
        form = {"k": str(args.k), "index": args.index, "target": args.target or "image", "rerank": str(args.rerank)}
        if spec:
            form["filter"] = json.dumps(spec)
        try:
            content = Path(args.image).read_bytes()
        except OSError as exc:
            raise SimlookupError(f"cannot read the query image {args.image}: {exc}") from None
        return client.post_file("/search/image", "image", Path(args.image).name, content, form)
    body: dict[str, Any] = {"k": args.k, "index": args.index, "filter": spec, "target": args.target}
    body |= {"text": args.query} if vector is None else {"vector": vector}
    body |= {"rerank": args.rerank, "rerank_factor": args.rerank_factor, "nprobe": args.nprobe}
    body |= {"hnsw_ef": args.ef, "exact": args.exact}
    body |= {"oversampling": args.oversampling, "rescore": False if args.no_rescore else None}
    if args.mode != "dense":
        body |= {"mode": args.mode, "fusion": args.fusion, "alpha": args.alpha}
    return client.post("/search", {k: v for k, v in body.items() if v is not None})


def _service_url(args: argparse.Namespace, s: Settings) -> str | None:
    """--url, or the live service `serve` recorded for this collection; None: work in-process."""
    if getattr(args, "url", None):
        return str(args.url)
    from simlookup.service import find_service

    return find_service(s.data_dir, args.name, s.api.key.get_secret_value() if s.api.key else None)


def _vector_arg(text: str) -> list[float]:
    """--vector: a JSON list of numbers, or @FILE holding one (.json) or a saved numpy array (.npy)."""
    try:
        if text.startswith("@"):
            path = Path(text[1:])
            if path.suffix == ".npy":
                import numpy as np

                arr = np.load(path, allow_pickle=False)
                if arr.ndim == 2 and arr.shape[0] == 1:
                    arr = arr[0]
                if arr.ndim != 1:
                    raise SimlookupError(f"--vector {path}: one vector expected, the array has shape {arr.shape}")
                return [float(x) for x in arr]
            text = path.read_text()
        vec = json.loads(text)
    except (OSError, ValueError) as exc:
        raise SimlookupError(f"--vector must be a JSON list of numbers or @FILE (.json, .npy): {exc}") from None
    ok = isinstance(vec, list) and vec and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vec)
    if not ok:
        raise SimlookupError("--vector must be a non-empty JSON list of finite numbers")
    from retrieval.stores.vector_checks import as_float32

    as_float32(vec, "--vector")  # a component beyond float32 (or float64) is an InvalidInputError naming the range
    if not all(math.isfinite(x) for x in vec):
        raise SimlookupError("--vector must be a non-empty JSON list of finite numbers")
    return [float(x) for x in vec]


def cmd_verify(args: argparse.Namespace) -> int:
    s = _settings(args)
    url = _service_url(args, s)
    if url:
        from simlookup.service import ServiceClient

        key = s.api.key.get_secret_value() if s.api.key else None
        body = {"sample": args.sample} if args.sample else {}
        doc = ServiceClient(url, key, timeout_s=600).post("/verify", body)
    else:
        from retrieval.verify import verify

        doc = verify(s, args.name, sample=args.sample).to_dict()
    from retrieval.verify_text import exit_status, report_text

    _emit(args, doc, report_text(doc) + (f" · via {url}" if url else ""))
    return exit_status(doc)


def cmd_serve(args: argparse.Namespace) -> int:
    # idle OpenMP threads sleep instead of spinning: a service shares its cores (with its clients, at least),
    # and spinning threads there cost 5-10x per query (measured on 2 cores); OMP_WAIT_POLICY=ACTIVE undoes it
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import uvicorn  # noqa: F401 - checked here for a clear message

        from simlookup.server.run import serve
    except ImportError as exc:
        raise SimlookupError(
            f"`simlookup serve` needs the serve extra: pip install 'simlookup[serve]' ({exc})"
        ) from None
    s = _settings(args)
    port = args.port if args.port is not None else s.api.port
    if not 0 <= port <= 65535:
        raise SimlookupError(f"--port {port} is not a TCP port (0 to 65535; 0 picks a free one)")
    return serve(s, args.name, args.host or s.api.host, port)


def cmd_loadtest(args: argparse.Namespace) -> int:
    from benchmarks.load import run_load

    s = _settings(args)
    try:
        levels = [int(x) for x in args.concurrency.split(",") if x]
    except ValueError:
        raise SimlookupError(f"--concurrency {args.concurrency!r}: give numbers, e.g. 1,8,32") from None
    res = run_load(
        s,
        args.name,
        requests=args.requests,
        concurrency=levels,
        index=args.index,
        modes=[m for m in args.batching.split(",") if m],
        out=Path(args.out) if args.out else None,
    )
    lines = [
        f"{r['concurrency']:>3} clients, batching {r['batching']:<3}: {r['throughput_rps']:.1f} req/s, "
        f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, mean batch {r['mean_batch']:.1f}, errors {r['errors']}"
        for r in res["runs"]
    ]
    _emit(args, res, "\n".join(lines))
    return 0 if all(r["errors"] == 0 for r in res["runs"]) else 1


def _bounded(lo: int, hi: int | None) -> Any:
    """An argparse type: an integer in [lo, hi] (hi None: no upper bound here, the settings cap it), else a usage
    error that names the range."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < lo or (hi is not None and v > hi):
            span = f"{lo} to {hi}" if hi is not None else f"{lo} or more"
            raise argparse.ArgumentTypeError(f"{v} is out of range: use {span}")
        return v

    return parse


def _unit(text: str) -> float:
    """An argparse type: a number in [0, 1] (``--alpha``)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{v} is out of range: use 0 to 1")
    return v


def cmd_eval(args: argparse.Namespace) -> int:
    from benchmarks.relevance import EvalRequest, parse_fusions, parse_indexes, parse_modes, run_eval
    from benchmarks.relevance_report import summary_lines, verdicts, write_report

    req = EvalRequest(args.dataset, args.name, parse_indexes(args.index), parse_modes(args.mode), args.k,
                      progress=not args.no_progress, fusions=parse_fusions(args.fusion), alpha=args.alpha)
    quiet = args.json or args.no_progress
    result = run_eval(_settings(args), req, log=lambda line: quiet or print(line, file=sys.stderr))
    written = write_report(result, Path(args.out)) if args.out else []
    doc = {"dataset": result["dataset"], "queries": result["queries"], "results": result["results"]}
    keys = ("documents", "corpus_documents", "rejected_documents", "rejected_judged", "warnings")
    doc |= {k: result[k] for k in keys if k in result}
    for w in result.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    gone = f" ({result['rejected_documents']:,} rejected at ingest)" if result.get("rejected_documents") else ""
    text = "\n".join([f"{result['dataset']}: {result['documents']:,} documents{gone}, {result['queries']:,} queries",
                      *summary_lines(result), *verdicts(result), *[f"wrote {p}" for p in written]])
    _emit(args, doc, text)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.cli import run_bench

    data, text = run_bench(_settings(args), args)
    _emit(args, data, text)
    return 0


DESCRIPTION = (
    "Embed text and images and search them in FAISS indexes and a Qdrant collection at once. "
    "Run 'simlookup COMMAND --help' for a command's options; every command takes --json to print one JSON document."
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simlookup", description=DESCRIPTION)
    p.add_argument("--data-dir", help="overrides SIMLOOKUP_DATA_DIR")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--version", action="version", version=f"simlookup {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        sp.set_defaults(fn=fn)
        return sp

    sp = add("info", cmd_info, "resolved settings (no secrets), the text model, collections")
    sp.add_argument("--model", action="store_true", help="also load the text model: its dim and fingerprint")
    add_manage_commands(add, _bounded)
    add("corpora", cmd_corpora, "corpora this machine can ingest")

    sp = add("ingest", cmd_ingest, "embed a corpus and write it to FAISS indexes and Qdrant")
    sp.add_argument("corpus", help="stsb | fashion-mnist | hf:<dataset>[:<config>][:<split>] | FILE | IMAGE_FOLDER")
    sp.add_argument("--name", required=True, help="collection name")
    sp.add_argument("--index", default="flat,ivf,ivfpq,hnsw",
                    help="FAISS kinds, comma-separated, of flat, ivf, ivfpq, hnsw, ivf_sq8, hnsw_sq8 ('' for none)")
    sp.add_argument(
        "--qdrant",
        choices=["edge", "server", "local", "none"],
        default=None,
        help="Qdrant engine (default: SIMLOOKUP_QDRANT__MODE, edge)",
    )
    sp.add_argument("--limit", type=_bounded(1, 10**12), help="ingest only the first N rows")
    sp.add_argument("--text-column", default="text")
    sp.add_argument("--id-column", default="id")
    sp.add_argument("--image-column", default=None, help="hf: image datasets")
    sp.add_argument(
        "--shard-size", type=_bounded(1, 1_000_000), default=1024, help="rows per cached embedding shard"
    )
    sp.add_argument(
        "--append",
        action="store_true",
        help="keep points whose rows are no longer in the source (default: the collection becomes equal to the source)",
    )
    sp.add_argument("--no-progress", action="store_true")
    sp.add_argument(
        "--yes",
        action="store_true",
        help="go ahead when the ingest removes points or drops indexes of an existing collection "
        "(without it such an ingest prints its plan and changes nothing)",
    )
    sp.add_argument("--dry-run", action="store_true", help="print what the ingest would do, write nothing")
    sp.add_argument(
        "--engine", choices=["local", "ray"], help="where to encode (default SIMLOOKUP_INGEST__ENGINE, local)"
    )
    sp.add_argument("--ray-address", help="ray: 'auto', 'host:6379' or 'ray://host:10001' (default: a local Ray)")
    sp.add_argument("--workers", type=int, help="ray: encoder actors (default SIMLOOKUP_INGEST__WORKERS, 2)")
    sp.add_argument("--gpus-per-worker", type=float, help="ray: GPUs per encoder actor (default 0)")
    byo = sp.add_argument_group("vectors you bring (a .npy file, or a .parquet / hf: source with --vector-column)")
    byo.add_argument("--vector-column", help="the column of float lists to ingest as they are (no model runs)")
    byo.add_argument(
        "--payload-column", help="a column of JSON objects (text or struct) to use as payloads (default: the others)"
    )
    byo.add_argument("--model", help="the sentence-transformers model that made the vectors: text queries then work")
    byo.add_argument("--metric", choices=["cosine", "dot", "l2"], help="default: the file's own (export), else cosine")
    byo.add_argument(
        "--dim", type=_bounded(1, 1_000_000), help="keep vectors of this length, reject the others (mixed lengths)"
    )

    sp = add("search", cmd_search, "search a collection by text or image")
    sp.add_argument("query", nargs="?", help="query text")
    sp.add_argument("--image", help="query image file")
    sp.add_argument("--name", required=True)
    sp.add_argument("--index", default="flat", help="flat | ivf | ivfpq | hnsw | ivf_sq8 | hnsw_sq8 | qdrant")
    sp.add_argument("-k", type=int, default=10, help="hits (default 10; capped by SIMLOOKUP_LIMITS__MAX_K)")
    sp.add_argument("--filter", action="append", help="field=value, field=a,b, field>=n (repeatable)")
    sp.add_argument("--rerank", action="store_true", help="exact re-rank of k×factor candidates")
    sp.add_argument(
        "--rerank-factor",
        type=int,
        help="candidates = k × factor (default 10; 0 turns it off, ivfpq too; capped by SIMLOOKUP_LIMITS__MAX_RERANK)",
    )
    # no upper bound of their own: the settings' caps (SIMLOOKUP_LIMITS__*) apply, in-process and in the service
    sp.add_argument(
        "--nprobe", type=_bounded(1, None), help="IVF lists to visit (capped by SIMLOOKUP_LIMITS__MAX_NPROBE)"
    )
    sp.add_argument("--ef", type=_bounded(1, None), help="HNSW ef at query time (capped by SIMLOOKUP_LIMITS__MAX_EF)")
    sp.add_argument("--exact", action="store_true", help="brute force")
    sp.add_argument(
        "--oversampling",
        type=float,
        help="a quantized Qdrant collection: k × oversampling candidates rescored (>= 1; capped by "
        "SIMLOOKUP_LIMITS__MAX_RERANK)",
    )
    sp.add_argument(
        "--no-rescore", action="store_true", help="a quantized Qdrant collection: quantized scores, not rescored"
    )
    sp.add_argument("--target", choices=["text", "image", "caption"], help="vector space to search")
    sp.add_argument("--mode", choices=["dense", "keyword", "hybrid"], default="dense",
                    help="dense: the vectors (default); keyword: BM25 on the keyword leg; hybrid: both, fused")
    sp.add_argument("--fusion", choices=["rrf", "dbsf"], help="hybrid: how the legs are fused (default "
                    "SIMLOOKUP_KEYWORD__FUSION, rrf)")
    sp.add_argument("--alpha", type=_unit, help="hybrid: the dense leg's share of the fused score, 0 to 1 (default "
                    "SIMLOOKUP_KEYWORD__ALPHA, 0.5: equal; 1: dense order, 0: keyword order)")
    sp.add_argument("--vector", help="search by a vector: a JSON list of numbers, or @FILE (.json, .npy)")
    sp.add_argument("--url", help="a running 'simlookup serve' (default: the one serving NAME, if any)")

    sp = add("eval", cmd_eval, "retrieval quality against relevance judgments: nDCG, MRR, recall, MAP per index")
    sp.add_argument("dataset", help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) or a shipped set: "
                    "stsb-paraphrase, lee")
    sp.add_argument("--name", required=True, help="collection (ingested from the set's corpus when it does not exist)")
    sp.add_argument("--index", help="indexes, comma-separated: flat, ivf, ivfpq, hnsw, ivf_sq8, hnsw_sq8, qdrant "
                    "(default: all but the sq8 kinds; flat always runs)")
    sp.add_argument("--mode", help="search modes, comma-separated, of dense, keyword, hybrid (default: dense)")
    sp.add_argument("--fusion", help="hybrid rows: fusion methods, comma-separated, of rrf, dbsf (default: "
                    "SIMLOOKUP_KEYWORD__FUSION, rrf)")
    sp.add_argument("--alpha", type=_unit, help="hybrid: the dense leg's share, 0 to 1 (default "
                    "SIMLOOKUP_KEYWORD__ALPHA, 0.5: equal)")
    sp.add_argument("-k", "--k", type=_bounded(1, 100), default=10, help="cutoff of nDCG@k and MRR@k (default 10)")
    sp.add_argument("--out", help="folder for results.json, report.md and eval.png")
    sp.add_argument("--no-progress", action="store_true")

    sp = add("verify", cmd_verify, "check that every index holds the same points (ids, vectors, payloads, count)")
    sp.add_argument("--name", required=True)
    sp.add_argument("--sample", type=_bounded(1, 10**9), help="compare vectors of N random ids only")
    sp.add_argument("--url", help="a running 'simlookup serve' (default: the one serving NAME, if any)")

    sp = add("serve", cmd_serve, "REST search service (FastAPI + uvicorn) over one collection")
    sp.add_argument("--name", required=True)
    sp.add_argument("--host", help="default SIMLOOKUP_API__HOST, 127.0.0.1")
    sp.add_argument("--port", type=_bounded(0, 65535), help="default SIMLOOKUP_API__PORT, 8000; 0 picks a free port")

    sp = add("loadtest", cmd_loadtest, "bounded load run against a real 'simlookup serve' on loopback")
    sp.add_argument("--name", required=True)
    sp.add_argument("--requests", type=int, default=240, help="requests per run (per level and mode)")
    sp.add_argument("--concurrency", default="1,8,32", help="client counts, comma-separated")
    sp.add_argument("--batching", default="off,on", help="micro-batching modes to compare: off, on")
    sp.add_argument("--index", default="hnsw")
    sp.add_argument("--out", help="folder for serve_load.json and serve_load.md")

    try:
        from benchmarks.cli import add_bench_arguments
    except ImportError:  # installed without the benchmarks package
        pass
    else:
        add_bench_arguments(
            add("bench", cmd_bench, "FAISS Flat/IVF/IVF-PQ/HNSW against Qdrant HNSW on the same vectors")
        )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.fn(args))
    except SimlookupError as exc:
        print(f"simlookup: error: {redact_url(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simlookup: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
