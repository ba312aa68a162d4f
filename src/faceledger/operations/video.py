"""Video on the record as it happens: scans and streams, and redaction.

A run (one scanned file, one watched stream) writes an entry when it starts; each decided
track's event and the entry naming that event commit in one transaction; an entry when it
ends. A run killed at any moment leaves every stored event with its entry.

Several files scan at once on bulk workers (:meth:`VideoOperations.scan_files`, one
worker per file): each file's start entry is written when its worker takes it, its
tracks and end entry when its turn comes in input order."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from faceledger.engine import Engine
from faceledger.errors import FaceledgerError, InputError
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
        job: str | None = None,
    ) -> None:
        self.ops = ops
        self.job = job
        """The archive job this run scans (named in each of its entries), if any."""
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

    def _named(self, result: dict[str, Any]) -> dict[str, Any]:
        return {**result, "job": self.job} if self.job is not None else result

    def start(self) -> LedgerEntry:
        result = self._named({"source": self.source, "camera": self.camera})
        record = self.acting.record(
            f"{self.action}.start", result, inputs=self.inputs, model=self.ops.model_id
        )
        self.start_entry = self.ops.ledger.append(record)
        return self.start_entry

    def record(self, decision: TrackDecision, started_at: datetime | None = None) -> int:
        """Store one decided track as an event, and its ledger entry (naming the event),
        in one transaction; returns the event id. The decision as stored is
        ``self.decisions[-1]``: unknown when its subject was erased after the match."""
        masked = without_credentials(decision.source)
        if masked != decision.source:  # a camera URL with its password: never stored
            decision = dataclasses.replace(decision, source=masked)
        stored: list[TrackDecision] = []

        def within(conn: Connection, event_id: int, kept: TrackDecision) -> None:
            stored.append(kept)  # as stored: unknown if its subject was erased meanwhile
            match = kept.match
            result: dict[str, Any] = {
                "event": event_id,
                "source": self.source,
                "camera": self.camera,
                "track": decision.track_id,
                "first_t": round(float(decision.first_t), 3),
                "last_t": round(float(decision.last_t), 3),
                "decision": match.decision,
                "reason": match.reason,
                "subject": match.subject,
                "score": round(float(match.score), 4),
                "threshold": round(float(match.threshold.value), 4),
                "threshold_fmr": match.threshold.fmr,
            }
            record = self.acting.record(
                f"{self.action}.track", self._named(result), inputs=self.inputs,
                model=self.ops.model_id,
            )  # fmt: skip
            self.ops.ledger.append_in(conn, record)

        event_id = self.ops.events.add(
            decision,
            self.camera,
            self.ops.model_id,
            self.keep_unknown,
            started_at=started_at,
            within=within,
        )
        self.decisions.append(stored[0] if stored else decision)
        self.event_ids.append(event_id)
        return event_id

    def finish(self, error: str | None = None) -> LedgerEntry:
        """The run's end: who was named (best score each), how many unknown, which events."""
        summary = tracks_summary([d.match for d in self.decisions], self.event_ids, error)
        summary["source"] = self.source
        summary["camera"] = self.camera
        summary = self._named(summary)
        record = self.acting.record(
            f"{self.action}.end", summary, inputs=self.inputs, model=self.ops.model_id
        )
        self.end_entry = self.ops.ledger.append(record)
        return self.end_entry


@dataclasses.dataclass(frozen=True)
class ScanJob:
    """One file for a scan worker."""

    path: Path
    every: int = 1
    best: int = 5


@dataclasses.dataclass(frozen=True)
class ScannedFile:
    """One file a scan worker went through: its decided tracks, the error that ended it
    early (None when it was read to the end), the seconds it took, and (once recorded,
    from :meth:`VideoOperations.scan_files`) its run, with each event's id."""

    path: Path
    decisions: tuple[TrackDecision, ...]
    error: str | None
    seconds: float
    run: VideoRun | None = None


def scan_task(engine: Engine, job: ScanJob) -> ScannedFile:
    """A scan worker's work on one file (a pool task): every track decided, with the
    worker's own engine (its detector, embedder and matcher over the gallery)."""
    from faceledger.video.scan import VideoScanner
    from faceledger.video.source import file_frames

    started = time.perf_counter()
    decisions: list[TrackDecision] = []
    error: str | None = None
    scanner = VideoScanner(engine, str(job.path), every=job.every, best_k=job.best)
    try:
        try:
            for frame in file_frames(job.path):
                decisions += scanner.feed(frame)
        finally:  # the tracks open when the file ended (or failed) are decided too
            decisions += scanner.finish()
    except InputError as exc:
        error = exc.reason
    return ScannedFile(job.path, tuple(decisions), error, time.perf_counter() - started)


def _finish_on_error(run: VideoRun, exc: BaseException) -> None:
    """The end entry names what stopped the run; if even that cannot be written (the
    database is what failed), the original error is the one raised."""
    with contextlib.suppress(FaceledgerError):
        run.finish(getattr(exc, "reason", None) or type(exc).__name__)


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
        run = self._new_run(acting, action, source, camera=camera, keep_unknown=keep_unknown)
        run.start()
        try:
            yield run
        except BaseException as exc:
            _finish_on_error(run, exc)
            raise
        run.finish(None)

    def _new_run(
        self,
        acting: Acting,
        action: str,
        source: str | Path,
        *,
        camera: str | None = None,
        keep_unknown: timedelta | None = None,
    ) -> VideoRun:
        inputs = digests([source]) if isinstance(source, Path) and source.is_file() else ()
        return VideoRun(
            self, acting, action, without_credentials(str(source)), camera=camera,
            keep_unknown=keep_unknown, inputs=inputs,
        )  # fmt: skip

    def scan_files(
        self,
        acting: Acting,
        videos: Sequence[Path],
        *,
        every: int = 1,
        best: int = 5,
        keep_unknown: timedelta | None = None,
        workers: int | None = None,
    ) -> Iterator[ScannedFile]:
        """Scan several video files at once, one worker per file (None or 0: every core),
        and record each as :meth:`video_run` does, in input order: a file's start entry
        when a worker takes it; once its turn comes, each decided track's event with its
        entry, then its end entry (naming the error that ended the file early, if one
        did: the tracks decided before it are kept). Yields each file once recorded.

        Unlike one file scanned in this thread, a file's events are stored when the whole
        file is done: a scan stopped part-way leaves the unfinished files with a start
        entry, an end entry naming what stopped them, and no events."""
        jobs = [ScanJob(video, every, best) for video in videos]
        with self.inference() as engine:
            pool = engine.pool(
                scan_task,
                workers,
                items=len(jobs),
                local=self.inference,
                shared_gallery=True,
                per_process=1,  # a video file is worth a process of its own
            )
        runs: dict[int, VideoRun] = {}

        def start(index: int, job: ScanJob) -> None:
            runs[index] = self._new_run(acting, "scan", job.path, keep_unknown=keep_unknown)
            runs[index].start()

        try:
            for index, scanned in enumerate(pool.map(jobs, on_submit=start)):
                run = runs[index]
                for decision in scanned.decisions:
                    run.record(decision)
                run.finish(scanned.error)
                del runs[index]
                yield dataclasses.replace(scanned, run=run)
        except BaseException as exc:
            for run in runs.values():
                _finish_on_error(run, exc)
            raise

    def submit_jobs(
        self, acting: Acting, videos: Sequence[Path], submission: str
    ) -> Recorded[list[dict[str, Any]]]:
        """An archive job: each video file a job (``{"id", "path", ...}``, its id
        ``submission:index``) to be scanned by one node; the submission's entry lists them."""
        jobs = [
            {
                "id": f"{submission}:{i}",
                "path": str(path.resolve()),
                "actor": acting.actor,
                "role": acting.role,
                "purpose": acting.purpose,
                "case": acting.case_ref,
            }
            for i, path in enumerate(videos)
        ]
        result = {"submission": submission, "files": [j["path"] for j in jobs]}
        entry = self._log(acting.record("jobs.submit", result))
        return Recorded(jobs, entry)

    def job_done(self, job_id: str) -> bool:
        """Whether the job's end entry is on the ledger (its file fully recorded)."""
        ends = self.ledger.mentioning([job_id], ["job.end"])
        return any(isinstance(e.result, dict) and e.result.get("job") == job_id for e in ends)

    def record_job(
        self,
        acting: Acting,
        job_id: str,
        scanned: ScannedFile,
        *,
        node: str | None = None,
        keep_unknown: timedelta | None = None,
    ) -> VideoRun | None:
        """A scanned job's file on the record: its ``job.start`` entry, each track's event
        with its ``job.track`` entry, its ``job.end`` entry, each naming the job (and the
        node that scanned it). None, and nothing written, when the job's end entry exists
        already (a node recorded it and died before its acknowledgement): a job is
        recorded once however often it is delivered."""
        if self.job_done(job_id):
            return None
        run = self._new_run(acting, "job", scanned.path, camera=None, keep_unknown=keep_unknown)
        run.job = job_id
        run.camera = node
        run.start()
        try:
            for decision in scanned.decisions:
                run.record(decision)
        except BaseException as exc:
            _finish_on_error(run, exc)
            raise
        run.finish(scanned.error)
        return run

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
