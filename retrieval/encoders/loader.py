"""The one place an encoder is built from settings: ingest, the retriever, the CLI and the service all call it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, overload

from retrieval.encoders.base import Encoder
from retrieval.errors import ModelNotFoundError
from retrieval.settings import Settings

if TYPE_CHECKING:  # the classes load their frameworks lazily; typing needs only the names
    from retrieval.encoders.clip import ClipEncoder
    from retrieval.encoders.text import TextEncoder


@overload
def load_encoder(settings: Settings, kind: Literal["text"], model: str | None = None) -> TextEncoder: ...
@overload
def load_encoder(settings: Settings, kind: Literal["clip"], model: str | None = None) -> ClipEncoder: ...
@overload
def load_encoder(settings: Settings, kind: str, model: str | None = None) -> Encoder: ...


def load_encoder(settings: Settings, kind: str, model: str | None = None) -> Encoder:
    """The text encoder (``kind='text'``; ``model`` overrides SIMLOOKUP_TEXT_MODEL) or the CLIP encoder
    (``kind='clip'``, an ``ImageEncoder``); another kind is a ModelNotFoundError naming both.

    A kind known when type checking gives its class; a kind read from data (a manifest) gives an ``Encoder``.
    """
    if kind == "text":
        from retrieval.encoders.text import TextEncoder

        return TextEncoder(
            model or settings.text_model,
            device=settings.device,
            batch_size=settings.batch_size,
            cache_dir=settings.data_dir / "models",
            quantize=settings.text_quantize,
        )
    if kind == "clip":
        from retrieval.encoders.clip import ClipEncoder

        c = settings.clip
        return ClipEncoder(
            model or c.arch,
            c.pretrained,
            device=settings.device,
            batch_size=settings.batch_size,
            max_image_pixels=c.max_image_pixels,
        )
    raise ModelNotFoundError(f"unknown encoder {kind!r}: use 'text' or 'clip'")
