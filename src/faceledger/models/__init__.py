"""Model catalog (declared cards) and the store that resolves cards to verified files."""

from faceledger.models.catalog import (
    CARDS,
    PROFILES,
    STRICTNESS_FMR,
    ModelCard,
    ModelFile,
    Profile,
    get_card,
    get_profile,
)
from faceledger.models.store import ModelStore, ResolvedModel, sha256_file

__all__ = [
    "CARDS",
    "PROFILES",
    "STRICTNESS_FMR",
    "ModelCard",
    "ModelFile",
    "ModelStore",
    "Profile",
    "ResolvedModel",
    "get_card",
    "get_profile",
    "sha256_file",
]
