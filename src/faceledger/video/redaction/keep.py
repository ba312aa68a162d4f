"""Who stays visible: the subjects to keep, and per frame which boxes are hidden.

A track stays visible only when its track-level decision names a kept subject, and then
only between per-frame samples that still match that subject; everything else found in a
frame is hidden. The one exception: a box lying mostly inside a face left visible in the
same frame is taken for a second detection of that face.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from faceledger.engine import Engine
from faceledger.errors import ConfigError
from faceledger.types import FloatArray, Match
from faceledger.video.redaction.hide import expand_boxes
from faceledger.video.redaction.report import Box
from faceledger.video.redaction.settings import DUPLICATE_INSIDE, MARGIN

if TYPE_CHECKING:
    from faceledger.video.redaction.plan import Plan


@dataclass(frozen=True)
class Keep:
    """Who stays visible: named subjects, or (``enrolled``) anyone in the gallery."""

    subjects: frozenset[str] = frozenset()
    enrolled: bool = False

    @classmethod
    def of(cls, subjects: Collection[str] = (), enrolled: bool = False) -> Keep:
        if subjects and enrolled:
            raise ConfigError("give either --keep SUBJECT ... or --keep-enrolled, not both")
        return cls(frozenset(subjects), enrolled)

    def __bool__(self) -> bool:
        return self.enrolled or bool(self.subjects)

    def keeps(self, match: Match | None) -> bool:
        if match is None or match.subject is None:
            return False
        return self.enrolled or match.subject in self.subjects


NOBODY = Keep()
"""The default: every face hidden."""


def check_keep(engine: Engine, keep: Keep) -> None:
    """Fail before any work when the gallery cannot identify the people to keep."""
    if not keep:
        return
    model = engine.model_id
    _, labels = engine.gallery.vectors(model)
    have = {str(x) for x in labels}
    if keep.enrolled and not have:
        raise ConfigError(
            f"{engine.config.db}: no subject has templates made by {model}, so nobody could be "
            "kept visible (enroll with the same --profile, or re-embed the gallery)"
        )
    missing = sorted(keep.subjects - have)
    if missing:
        known = sorted(s.name for s in engine.gallery.subjects())
        unusable = [m for m in missing if m in known]
        detail = (
            f"; {', '.join(unusable)} has no templates made by {model} (enroll with the same "
            "--profile, or re-embed the gallery)"
            if unusable
            else ""
        )
        raise ConfigError(
            f"cannot keep {', '.join(missing)}: not enrolled in {engine.config.db} with "
            f"{model}{detail}"
        )


def visible_frames(plan: Plan, keep: Keep, verify: float) -> dict[int, set[int]]:
    """Per kept track, the frames in which it stays visible.

    A track is kept when its track-level decision names a kept subject. Even then, a frame
    stays visible only when the per-detection samples on both sides of it (the nearest before
    and after, within the track) still match that subject at ``verify`` or more; so a track
    that switched to another person part-way (crossing faces) is hidden from there on.
    """
    kept = {tid: b for tid, b in plan.tracks.items() if keep.keeps(b.match) and b.samples}
    frames: dict[int, list[int]] = {tid: [] for tid in kept}
    for index, regions in enumerate(plan.regions):
        for tid, _ in regions:
            if tid in frames and (not frames[tid] or frames[tid][-1] != index):
                frames[tid].append(index)
    visible: dict[int, set[int]] = {}
    for tid, book in kept.items():
        subject = book.match.subject if book.match else None
        at = [index for index, _ in book.samples]
        ok = [
            any(c.subject == subject and c.score >= verify for c in candidates)
            for _, candidates in book.samples
        ]
        shown: set[int] = set()
        for index in frames[tid]:
            after = bisect.bisect_left(at, index)
            before = after - 1 if after == len(at) or at[after] != index else after
            sides = [i for i in (before, after) if 0 <= i < len(at)]
            if sides and all(ok[i] for i in sides):
                shown.add(index)
        if shown:
            visible[tid] = shown
    return visible


def hidden_boxes(plan: Plan, kept: dict[int, set[int]], index: int) -> tuple[FloatArray, int]:
    """Enlarged boxes to hide in frame ``index`` and the number of faces they stand for."""
    regions = plan.regions[index] if index < len(plan.regions) else []
    shown = [box for tid, box in regions if index in kept.get(tid, ())]
    chosen = [
        (tid, box)
        for tid, box in regions
        if index not in kept.get(tid, ()) and not duplicate_of(box, shown)
    ]
    if not chosen:
        return np.zeros((0, 4), np.float32), 0
    faces = len({tid for tid, _ in chosen if tid >= 0}) + sum(1 for tid, _ in chosen if tid < 0)
    width, height = plan.size
    boxes = expand_boxes(np.array([b for _, b in chosen], np.float32), MARGIN, width, height)
    return boxes, faces


def duplicate_of(box: Box, shown: list[Box]) -> bool:
    """Whether ``box`` lies mostly (``DUPLICATE_INSIDE``) inside a face left visible in the
    same frame: a second detection of that face (part of it, at another scale), not a
    stranger, whose face could not be seen through the visible one."""
    if not shown:
        return False
    x1, y1, x2, y2 = box
    area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    if area <= 0:
        return True
    for a1, b1, a2, b2 in shown:
        inter = max(min(x2, a2) - max(x1, a1), 0.0) * max(min(y2, b2) - max(y1, b1), 0.0)
        if inter >= DUPLICATE_INSIDE * area:
            return True
    return False
