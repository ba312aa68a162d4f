"""Redaction's former home, kept so that its names still import from here; the code is in
:mod:`faceledger.video.redaction`, split by what it does."""

from __future__ import annotations

from faceledger.video import redaction
from faceledger.video.redaction import *  # noqa: F403  (the same public names as before)

__all__ = redaction.__all__
