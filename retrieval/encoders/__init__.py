"""Encoders: text (sentence-transformers) and CLIP (open_clip). Heavy imports stay inside the modules."""

from retrieval.encoders.base import Encoder, normalize
from retrieval.encoders.loader import load_encoder

__all__ = ["Encoder", "load_encoder", "normalize"]
