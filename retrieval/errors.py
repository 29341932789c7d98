"""The project's error types: every failure a user can cause has one, with a message that says what to do."""

from __future__ import annotations


class SimlookupError(Exception):
    """Base class of every error simlookup raises on purpose."""


class ConfigError(SimlookupError):
    """Settings are missing, unknown or contradict each other."""


class ModelNotFoundError(SimlookupError):
    """A model (text or CLIP) cannot be loaded from the configured source."""


class InvalidInputError(SimlookupError, ValueError):
    """A query or a point is malformed: empty text, wrong dimension, NaN, a broken image."""


class DimensionMismatchError(InvalidInputError):
    """A vector's dimension differs from the store's."""


class UnknownKindError(SimlookupError, ValueError):
    """An index kind, metric or backend name is not known."""


class StoreError(SimlookupError):
    """A store cannot be created, opened or written."""


class StoreNotFoundError(StoreError):
    """The named store does not exist on disk or on the server."""


class StoreExistsError(StoreError):
    """A store with this name already holds data."""


class StoreLockedError(StoreError):
    """The store is open in another process (or another handle in this one)."""


class StoreClosedError(StoreError):
    """The store was used after close()."""


class ManifestMismatchError(StoreError):
    """The index on disk was built for another model, dimension, metric or kind."""


class CorruptIndexError(StoreError):
    """The index file on disk is truncated or does not match its manifest's checksum."""


class CorruptManifestError(StoreError):
    """A collection manifest on disk is not valid JSON or not a manifest; the message names the file and the fix."""


class NotTrainedError(StoreError):
    """An IVF/PQ index has too few points to be trained yet."""


class FilterError(InvalidInputError):
    """A payload filter names an unknown field or is malformed."""


class BackendUnavailableError(StoreError):
    """A remote engine (Qdrant server) cannot be reached after retries."""
