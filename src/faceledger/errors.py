"""One exception tree for faceledger.

::

    FaceledgerError                  anything faceledger raises on purpose
    +-- ConfigError                  bad settings, unknown names, unusable options  (CLI exit 2)
    +-- ModelError                   a model file missing, unverifiable or failing to load
    |   +-- ModelNotFoundError       not in any place we looked (the message lists them)
    |   +-- ChecksumError            a file's sha256 differs from the model card
    +-- InputError                   one input (image, path) cannot be used; a batch goes on
    |   +-- NoFaceError              the image decoded but holds no usable face
    |   +-- AmbiguousFaceError       several faces where exactly one was needed
    |   +-- PoorFaceError            the face is below the quality floor (not enrolled)
    +-- NotFoundError                a named subject (or other record) does not exist
    +-- ConflictError                the request clashes with a record's state (reviewed twice)
    +-- StorageError                 the gallery database cannot be used
        +-- StorageBusyError         locked by another writer, or the server unreachable:
        |                            try again (API: 503 with Retry-After)
        +-- ModelMismatchError       the gallery was enrolled with another embedder

Front ends map these to exit codes (CLI) or HTTP statuses (API); nothing else should be
caught broadly. Every message names the thing it is about (a file, a model, a database).
"""

from __future__ import annotations


class FaceledgerError(Exception):
    """Base of every error faceledger raises on purpose."""


class ConfigError(FaceledgerError):
    """Settings or names that cannot be used."""


class ModelError(FaceledgerError):
    """A model cannot be resolved, verified or loaded."""


class ModelNotFoundError(ModelError):
    """No place we looked holds the model file."""


class ChecksumError(ModelError):
    """A model file's sha256 differs from the one its card declares."""


class InputError(FaceledgerError):
    """One input cannot be used; carries the path it is about."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class NoFaceError(InputError):
    """The image was read but no face passed detection and the quality gate."""


class AmbiguousFaceError(InputError):
    """Several faces were found where exactly one was needed."""


class PoorFaceError(InputError):
    """The face is below the quality floor: a template made from it could not be trusted
    (every later comparison with it would be one the stated error rates do not cover)."""


class NotFoundError(FaceledgerError):
    """A named subject or record does not exist."""


class ConflictError(FaceledgerError):
    """The request clashes with the state of a record (e.g. an event already decided)."""


class StorageError(FaceledgerError):
    """The gallery database is unusable (not ours, corrupt, locked, newer schema)."""


class StorageBusyError(StorageError):
    """The database is locked past the busy timeout, or its server does not answer now."""

    retry_after_s = 5


class ModelMismatchError(StorageError):
    """Templates in the gallery were made by another embedder than the one in use."""


__all__ = [
    "AmbiguousFaceError",
    "ChecksumError",
    "ConfigError",
    "ConflictError",
    "FaceledgerError",
    "InputError",
    "ModelError",
    "ModelMismatchError",
    "ModelNotFoundError",
    "NoFaceError",
    "NotFoundError",
    "PoorFaceError",
    "StorageBusyError",
    "StorageError",
]
