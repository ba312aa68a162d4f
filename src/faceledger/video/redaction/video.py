"""Redacting a video file: two passes, and the report of what they did.

::

    pass 1  (plan)    decode -> VideoScanner (cuts, detection every N-th frame and every cut,
                      tracks, one decision per track) with redaction's detection -> per
                      frame the boxes to hide; with --keep, samples that check the decisions
    keep              per kept track, the frames where its samples still match its subject
    pass 2  (encode)  decode again -> hide every box except kept tracks' visible frames ->
                      encode with the input's pts and time base; audio packets copied

Why two passes: whether a track may stay visible is known only once its best frames have
been seen, often long after its first frame, and the gap-filling boxes need detections on
both sides of a gap; the price is decoding the file twice (pass 2 is the cheap one).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from faceledger.engine import Engine
from faceledger.errors import ConfigError
from faceledger.models.catalog import STRICTNESS_FMR
from faceledger.video.redaction.encode import check_video_output, write_video
from faceledger.video.redaction.files import check_paths, temp_beside, unlink
from faceledger.video.redaction.keep import NOBODY, Keep, check_keep, visible_frames
from faceledger.video.redaction.plan import Plan, plan_video
from faceledger.video.redaction.report import KeptTrack, Publish, RedactReport, kept_track
from faceledger.video.redaction.settings import VERIFY_STRICTNESS, ProgressFn, check_method
from faceledger.video.source import open_container


def redact_video(
    engine: Engine,
    src: Path,
    dst: Path,
    *,
    keep: Keep = NOBODY,
    method: str = "blur",
    every: int = 1,
    force: bool = False,
    progress: ProgressFn | None = None,
    publish: Publish | None = None,
) -> RedactReport:
    """Write ``dst``: ``src`` with every face hidden except the tracks of kept subjects.
    ``publish(report)`` runs before the finished copy is moved into place (see
    :func:`~.image.redact_image`).

    Same size (upright), frame rate and presentation times as the input; audio copied. Raises
    InputError (nothing written under ``dst``) when the input cannot be decoded at all; a
    video broken part-way is written up to the break and reported with ``complete=False``.
    """
    started = time.monotonic()
    check_method(method)
    if every < 1:
        raise ConfigError(f"--every must be at least 1, got {every}")
    check_paths(src, dst, force, want_image=False)
    check_keep(engine, keep)
    open_container(str(src)).close()  # a clear error for non-videos before any work
    tmp = temp_beside(dst)
    try:
        check_video_output(tmp, dst)
        plan = plan_video(engine, src, keep, every, progress)
        verify = min(
            engine.embedder_card.threshold_for(STRICTNESS_FMR[VERIFY_STRICTNESS]),
            engine.threshold.value,
        )
        kept = visible_frames(plan, keep, verify)
        written = write_video(
            plan, src=src, tmp=tmp, dst=dst, kept=kept, method=method, progress=progress
        )
        broken = written.broken or plan.broken
        notes = []
        if broken:
            notes.append(f"{broken}; wrote the {written.frames} frames before it")
        if plan.rotation:
            notes.append(f"frames turned upright ({plan.rotation * 90} degrees); no rotation flag")
        width, height = plan.size
        report = RedactReport(
            source=str(src),
            output=str(dst),
            kind="video",
            method=method,
            width=width,
            height=height,
            frames=written.frames,
            fps=written.fps,
            detections=plan.detections,
            faces_blurred=written.faces,
            tracks=len(plan.tracks),
            kept=_kept_tracks(plan, kept),
            audio_streams=written.audio,
            codec=written.codec,
            seconds=time.monotonic() - started,
            complete=broken is None,
            notes=tuple(notes),
        )
        if publish is not None:
            publish(report)
        os.replace(tmp, dst)
    finally:
        unlink(tmp)
    return report


def _kept_tracks(plan: Plan, kept: dict[int, set[int]]) -> tuple[KeptTrack, ...]:
    """The report's line for each track left visible in some frame."""
    visible = []
    for tid in sorted(kept):
        book = plan.tracks[tid]
        if book.match is not None and book.detections:
            visible.append(
                kept_track(
                    tid,
                    book.match,
                    first=book.detections[0][0],
                    last=book.detections[-1][0],
                    detected=len(book.detections),
                    visible=len(kept[tid]),
                    best_frame=book.best_frame,
                    best_box=book.best_box,
                )
            )
    return tuple(visible)
