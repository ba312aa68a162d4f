"""Uploaded images: size-limited reads into :class:`~faceledger.images.Blob`."""

from __future__ import annotations

import re

from fastapi import UploadFile

from faceledger.api.errors import ApiError
from faceledger.images import Blob

_UNSAFE = re.compile(r"[^\w.\- ]+")


def safe_name(filename: str | None, fallback: str) -> str:
    """The client's file name, cleaned for messages (it is never used as a path)."""
    name = _UNSAFE.sub("_", (filename or "").strip())[:120]
    return name or fallback


def read_upload(upload: UploadFile, limit: int, fallback: str = "upload") -> Blob:
    name = safe_name(upload.filename, fallback)
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "PayloadTooLarge", f"{name}: larger than the limit of {limit:,} bytes")
    return Blob(name, data)
