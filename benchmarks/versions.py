"""Library versions recorded with every benchmark run."""

from __future__ import annotations

from importlib import metadata

PACKAGES = (
    "faiss-cpu",
    "qdrant-client",
    "qdrant-edge-py",
    "numpy",
    "torch",
    "sentence-transformers",
    "open_clip_torch",
    "simlookup",
)


def library_versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out
