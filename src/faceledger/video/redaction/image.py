"""Redacting a photo: every face hidden except kept subjects, identified one by one.

Photos are searched more thoroughly than video frames (see :func:`~.detect.detect_all`).
The copy is stored upright without metadata (EXIF, GPS), written beside its final name and
moved into place only after ``publish`` (its ledger entry) ran.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.engine import Engine
from faceledger.errors import InputError
from faceledger.images import load_image
from faceledger.types import ImageArray
from faceledger.video.redaction.detect import detect_all, identifiable
from faceledger.video.redaction.files import check_paths, temp_beside, unlink
from faceledger.video.redaction.hide import blur_regions, expand_boxes
from faceledger.video.redaction.keep import NOBODY, Keep, check_keep, duplicate_of
from faceledger.video.redaction.report import (
    KeptTrack,
    Publish,
    RedactReport,
    box_tuple,
    kept_track,
)
from faceledger.video.redaction.settings import MARGIN, check_method


def redact_image(
    engine: Engine,
    src: Path,
    dst: Path,
    *,
    keep: Keep = NOBODY,
    method: str = "blur",
    force: bool = False,
    publish: Publish | None = None,
) -> RedactReport:
    """Write ``dst``: the upright photo ``src`` with every face hidden except kept subjects.

    ``publish(report)`` runs once the copy is written but before it is moved into place
    (its ledger entry): if it raises, no copy is left."""
    started = time.monotonic()
    check_method(method)
    check_paths(src, dst, force, want_image=True)
    check_keep(engine, keep)
    c = engine.config
    image = load_image(
        src, c.max_pixels, c.max_bytes,
        max_decode_bytes=c.max_decode_bytes, decode_budget_total=c.decode_budget_total,
    )  # fmt: skip
    h, w = image.shape[:2]
    faces = detect_all(engine, image, photo=True)
    kept = np.zeros(len(faces), dtype=bool)
    visible: list[KeptTrack] = []
    if keep and len(faces):
        idx = np.nonzero(identifiable(engine, faces))[0]
        if len(idx):
            matches = engine.matcher().match(engine.embed(image, faces[idx]))
            for i, match in zip(idx, matches, strict=True):
                if keep.keeps(match):
                    kept[i] = True
                    box = box_tuple(faces.boxes[i])
                    visible.append(
                        kept_track(
                            int(i),
                            match,
                            first=0,
                            last=0,
                            detected=1,
                            visible=1,
                            best_frame=0,
                            best_box=box,
                        )
                    )
    shown = [box_tuple(b) for b in faces.boxes[kept]]
    hide = np.array(
        [
            not k and not duplicate_of(box_tuple(b), shown)
            for b, k in zip(faces.boxes, kept, strict=True)
        ],
        dtype=bool,
    )
    out = blur_regions(image, expand_boxes(faces.boxes[hide], MARGIN, w, h), method)
    report = RedactReport(
        source=str(src),
        output=str(dst),
        kind="image",
        method=method,
        width=w,
        height=h,
        frames=1,
        fps=0.0,
        detections=len(faces),
        faces_blurred=int(hide.sum()),
        tracks=0,
        kept=tuple(visible),
        audio_streams=0,
        codec="",
        seconds=time.monotonic() - started,
        notes=("metadata (EXIF, GPS) is not copied; pixels are stored upright",),
    )
    tmp = temp_beside(dst)
    try:
        _write_image(out, tmp, dst)
        if publish is not None:
            publish(report)
        os.replace(tmp, dst)
    finally:
        unlink(tmp)
    return report


def _write_image(image: ImageArray, tmp: Path, dst: Path) -> None:
    from PIL import Image

    fmt = Image.registered_extensions().get(dst.suffix.lower())
    if fmt is None:
        raise InputError(str(dst), f"cannot write {dst.suffix} images")
    options: dict[str, Any] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    try:
        Image.fromarray(image).save(tmp, format=fmt, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(str(dst), f"cannot write the image ({exc})") from None
