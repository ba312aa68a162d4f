"""Video on the record as it happens: scans and streams, and redaction.

A run (one scanned file, one watched stream) writes an entry when it starts; each decided
track's event and the entry naming that event commit in one transaction; an entry when it
ends. A run killed at any moment leaves every stored event with its entry."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from faceledger.engine import Engine
from faceledger.errors import FaceledgerError
from faceledger.events.sinks import WebhookSink
from faceledger.ledger.audit import tracks_summary
from faceledger.ledger.chain import LedgerEntry
from faceledger.operations.acting import Acting
from faceledger.operations.base import OperationsBase, Recorded
from faceledger.operations.searches import digests
from faceledger.video.redact import (
    Keep,
    ProgressFn,
    RedactReport,
    redact_image,
    redact_video,
    redaction_config,
)

if TYPE_CHECKING:
    from faceledger.video.scan import TrackDecision

KEEP_NOBODY = Keep()
"""Redaction's default: every face hidden."""


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s]*@")


def without_credentials(source: str) -> str:
    """A stream address as the ledger may keep it forever: ``rtsp://user:pass@host/x``
    becomes ``rtsp://***@host/x`` (the rest, host and path, says which camera it was)."""
    return _USERINFO.sub(r"\g<scheme>***@", source)


class VideoRun:
    """One file or stream being decided, on the record (see the module docstring)."""

    def __init__(
        self,
        ops: OperationsBase,
        acting: Acting,
        action: str,
        source: str,
        *,
        camera: str | None = None,
        keep_unknown: timedelta | None = None,
        inputs: tuple[str, ...] = (),
    ) -> None:
        self.ops = ops
        self.acting = acting
        self.action = action
        self.source = source
        self.camera = camera
        self.keep_unknown = keep_unknown
        self.inputs = inputs
        self.decisions: list[TrackDecision] = []
        self.event_ids: list[int] = []
        self.start_entry: LedgerEntry | None = None
        self.end_entry: LedgerEntry | None = None

    def start(self) -> LedgerEntry:
        result = {"source": self.source, "camera": self.camera}
        record = self.acting.record(
            f"{self.action}.start", result, inputs=self.inputs, model=self.ops.model_id
        )
        self.start_entry = self.ops.ledger.append(record)
        return self.start_entry

    def record(self, decision: TrackDecision, started_at: datetime | None = None) -> int:
        """Store one decided track as an event, and its ledger entry (naming the event),
        in one transaction; returns the event id."""
        masked = without_credentials(decision.source)
        if masked != decision.source:  # a camera URL with its password: never stored
            decision = dataclasses.replace(decision, source=masked)
        match = decision.match

        def within(conn: Connection, event_id: int) -> None:
            result: dict[str, Any] = {
                "event": event_id,
                "source": self.source,
                "camera": self.camera,
                "track": decision.track_id,
                "first_t": round(float(decision.first_t), 3),
                "last_t": round(float(decision.last_t), 3),
                "subject": match.subject,
                "score": round(float(match.score), 4),
                "threshold": round(float(match.threshold.value), 4),
                "threshold_fmr": match.threshold.fmr,
            }
            record = self.acting.record(
                f"{self.action}.track", result, inputs=self.inputs, model=self.ops.model_id
            )
            self.ops.ledger.append_in(conn, record)

        event_id = self.ops.events.add(
            decision,
            self.camera,
            self.ops.model_id,
            self.keep_unknown,
            started_at=started_at,
            within=within,
        )
        self.decisions.append(decision)
        self.event_ids.append(event_id)
        return event_id

    def finish(self, error: str | None = None) -> LedgerEntry:
        """The run's end: who was named (best score each), how many unknown, which events."""
        summary = tracks_summary([d.match for d in self.decisions], self.event_ids, error)
        summary["source"] = self.source
        summary["camera"] = self.camera
        record = self.acting.record(
            f"{self.action}.end", summary, inputs=self.inputs, model=self.ops.model_id
        )
        self.end_entry = self.ops.ledger.append(record)
        return self.end_entry


class VideoOperations(OperationsBase):
    @contextlib.contextmanager
    def video_run(
        self,
        acting: Acting,
        action: str,
        source: str | Path,
        *,
        camera: str | None = None,
        keep_unknown: timedelta | None = None,
    ) -> Iterator[VideoRun]:
        """``with ops.video_run(acting, "scan", path) as run: run.record(decision)``: the
        start entry on entering; the end entry on leaving (with the error, if one ended
        it). ``action`` is "scan" (a file) or "watch" (a stream)."""
        inputs = digests([source]) if isinstance(source, Path) and source.is_file() else ()
        run = VideoRun(
            self, acting, action, without_credentials(str(source)), camera=camera,
            keep_unknown=keep_unknown, inputs=inputs,
        )  # fmt: skip
        run.start()
        try:
            yield run
        except BaseException as exc:
            # The end entry names what stopped the run; if even that cannot be written
            # (the database is what failed), the original error is the one raised.
            with contextlib.suppress(FaceledgerError):
                run.finish(getattr(exc, "reason", None) or type(exc).__name__)
            raise
        run.finish(None)

    def webhook_sink(self, url: str, **options: Any) -> WebhookSink:
        """A sink POSTing each event to ``url`` through this gallery's durable outbox
        (``options``: :class:`~faceledger.events.sinks.WebhookSink`'s, e.g. ``timeout``)."""
        options.setdefault("clock", self.clock)
        return WebhookSink(url, self.gallery, **options)

    def redaction_engine(self) -> Engine:
        """An engine with redaction's detection settings, over this gallery."""
        return Engine(redaction_config(self.config), gallery=self.gallery)

    def redact(
        self,
        acting: Acting,
        source: Path,
        output: Path,
        *,
        keep: Keep = KEEP_NOBODY,
        method: str = "blur",
        every: int = 1,
        force: bool = False,
        image: bool = False,
        progress: ProgressFn | None = None,
        engine: Engine | None = None,
    ) -> Recorded[RedactReport]:
        """A copy of a photo or video with faces hidden except kept subjects. Identifying
        whom to keep is a search: its entry (who was kept, with scores) is written once the
        copy is made and before it is moved into place, so no copy exists without it."""
        engine = engine or self.redaction_engine()
        inputs = digests([source])
        entries: list[LedgerEntry] = []

        def publish(report: RedactReport) -> None:
            result = {
                "kind": report.kind,
                "method": report.method,
                "keep": sorted(keep.subjects) if keep.subjects else ("enrolled" if keep else None),
                "frames": report.frames,
                "tracks": report.tracks,
                "faces_blurred": report.faces_blurred,
                "kept": [
                    {"subject": k.subject, "score": round(k.score, 4), "track": k.track_id}
                    for k in report.kept
                ],
                "complete": report.complete,
            }
            record = acting.record("redact", result, inputs=inputs, model=engine.model_id)
            entries.append(self._log(record))

        if image:
            report = redact_image(
                engine, source, output, keep=keep, method=method, force=force, publish=publish
            )
        else:
            report = redact_video(
                engine, source, output, keep=keep, method=method, every=every, force=force,
                progress=progress, publish=publish,
            )  # fmt: skip
        return Recorded(report, entries[0])
