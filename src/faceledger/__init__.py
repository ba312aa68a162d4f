"""faceledger: accountable, self-hosted face recognition.

    from faceledger import Engine, load_config

    with Engine(load_config(profile="fast", db="gallery.db")) as engine:
        engine.enroll("ada", [Path("ada.jpg")], "signed consent form 2026-11")
        result = engine.identify(Path("door.jpg"))

Nothing loads a model at import time; models load on first use or with ``Engine.load()``.
"""

from faceledger.config import Config, load_config
from faceledger.engine import Engine, EnrollReport
from faceledger.errors import FaceledgerError
from faceledger.types import Embeddings, Faces, ImageResult, Match, Threshold, Verification

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Embeddings",
    "Engine",
    "EnrollReport",
    "FaceledgerError",
    "Faces",
    "ImageResult",
    "Match",
    "Threshold",
    "Verification",
    "load_config",
]
