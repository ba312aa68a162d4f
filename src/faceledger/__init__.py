"""faceledger: accountable, self-hosted face recognition.

    from pathlib import Path
    from faceledger import Acting, Operations, load_config

    with Operations(load_config(profile="fast", db="gallery.db")) as ops:
        me = Acting.os_user(purpose="door access check")
        ops.enroll(me, "ada", [Path("ada.jpg")], "signed consent form 2026-11")
        answer = ops.identify(me, Path("door.jpg"))
        print(answer.value.faces, "recorded as ledger entry", answer.entry.seq)

Every operation on personal data goes through :class:`Operations` and is written to the
gallery's audit ledger (in the same transaction as its effect; a search before its answer
is returned), with the acting person, their purpose and case. ``db`` may also be a
PostgreSQL URL (``postgresql://user@host:5432/faceledger``). :class:`Engine` is the bare
pipeline (detect, align, embed) for benchmarks and tools that touch no gallery.
Nothing loads a model at import time; models load on first use or with ``load()``.
"""

from faceledger.config import Config, load_config
from faceledger.engine import Engine, EnrollReport
from faceledger.errors import FaceledgerError
from faceledger.operations import Acting, Operations, Recorded
from faceledger.types import Embeddings, Faces, ImageResult, Match, Threshold, Verification

__version__ = "0.1.0"

__all__ = [
    "Acting",
    "Config",
    "Embeddings",
    "Engine",
    "EnrollReport",
    "FaceledgerError",
    "Faces",
    "ImageResult",
    "Match",
    "Operations",
    "Recorded",
    "Threshold",
    "Verification",
    "load_config",
]
