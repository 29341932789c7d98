"""Encoders: text (sentence-transformers) and CLIP (open_clip). Heavy imports stay inside the modules."""

from retrieval.encoders.base import Encoder, normalize

__all__ = ["Encoder", "normalize"]
