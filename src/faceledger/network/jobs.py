"""Archive jobs: video files scanned by whichever node takes them off a JetStream work queue.

``faceledger jobs submit DIR`` puts one message per file on the queue (its entry,
``jobs.submit``, lists the files). A node's job thread takes one at a time, scans it with
its own engine (the cameras keep theirs), records it (``job.start``, each track's event
with its ``job.track`` entry, ``job.end``, all naming the job), and only then
acknowledges it. A node that dies before the acknowledgement leaves the message to be
delivered again, to another node, after the queue's ``ack_wait``; a job whose end entry is
on the ledger already is acknowledged without being recorded again, so every file is
recorded once (by its ledger entries) however often it is delivered.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from faceledger.engine import Engine
from faceledger.errors import FaceledgerError, InputError
from faceledger.network.nats import Job, JobQueue
from faceledger.operations import Acting, Operations
from faceledger.operations.video import ScannedFile
from faceledger.video.scan import VideoScanner
from faceledger.video.source import file_frames

log = logging.getLogger(__name__)


def acting_of(job: dict[str, Any]) -> Acting:
    """The submitter's acting context, carried in the job."""
    return Acting(
        str(job.get("actor") or "unknown"), str(job.get("role") or "cli"),
        job.get("purpose"), job.get("case"),
    )  # fmt: skip


class JobRunner:
    """A node's archive-job thread (see the module notes)."""

    def __init__(
        self, ops: Operations, queue: JobQueue, node: str, *, poll: float = 1.0, every: int = 1
    ) -> None:
        self.ops = ops
        self.queue = queue
        self.node = node
        self.poll = poll
        self.every = every
        self.done: list[str] = []
        """The ids of the jobs this node acknowledged (recorded here, or found recorded)."""
        self.failed: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"jobs {node}", daemon=True)
        self._engine: Engine | None = None

    def start(self) -> JobRunner:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs; a job being scanned is finished (and acknowledged) first."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        worker = self.queue.worker()
        try:
            while not self._stop.is_set():
                try:
                    job = worker.next(self.poll)
                except FaceledgerError as exc:  # the server away: try again shortly
                    log.warning("%s: job queue: %s", self.node, exc)
                    self._stop.wait(self.poll)
                    continue
                if job is not None:
                    self._one(job)
        finally:
            worker.close()

    def _one(self, job: Job) -> None:
        data = job.data
        job_id = str(data.get("id"))
        try:
            job.in_progress()  # taken: the ack wait starts again (loading may take a while)
            if self.ops.job_done(job_id):
                log.info("%s: job %s was recorded already; acknowledged", self.node, job_id)
            else:
                scanned = self._scan(job, Path(str(data.get("path"))))
                job.in_progress()  # and again before recording it
                self.ops.record_job(
                    acting_of(data), job_id, scanned, node=self.node,
                    keep_unknown=self.ops.config.keep_unknown,
                )  # fmt: skip
                if scanned.error is not None:
                    self.failed.append((job_id, scanned.error))
            job.ack()
            self.done.append(job_id)
        except FaceledgerError as exc:  # not recorded: let another delivery try again
            log.warning("%s: job %s: %s; left for another try", self.node, job_id, exc)
            job.nak(5.0)

    def _scan(self, job: Job, path: Path) -> ScannedFile:
        """Every track of the file decided, telling the queue the job is alive meanwhile."""
        engine = self._engine or self._make_engine()
        started = time.perf_counter()
        decisions = []
        error: str | None = None
        scanner = VideoScanner(engine, str(path), every=self.every)
        beat = time.monotonic()
        try:
            try:
                for frame in file_frames(path):
                    decisions += scanner.feed(frame)
                    if time.monotonic() - beat > 2.0:
                        job.in_progress()
                        beat = time.monotonic()
            finally:
                decisions += scanner.finish()
        except InputError as exc:
            error = exc.reason
        return ScannedFile(path, tuple(decisions), error, time.perf_counter() - started)

    def _make_engine(self) -> Engine:
        self._engine = Engine(self.ops.config, gallery=self.ops.gallery)
        self._engine.load()
        return self._engine
