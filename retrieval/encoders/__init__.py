"""Encoders: text (sentence-transformers) and CLIP (open_clip). Heavy imports stay inside the modules.

The contract is ``Encoder`` (texts and queries) and ``ImageEncoder`` (CLIP: images too); ``load_encoder`` is the
one way to build either from settings: import it from here.
"""

from retrieval.encoders.base import Encoder, ImageEncoder, normalize
from retrieval.encoders.loader import load_encoder

__all__ = ["Encoder", "ImageEncoder", "load_encoder", "normalize"]
