"""Searches on the record: identify, verify, detect. Each writes its ledger entry before
its answer is returned; a search that fails on its input is recorded too.

The bulk forms (:meth:`SearchOperations.identify_many`, :meth:`SearchOperations.detect_many`)
read, detect and embed on several workers (:meth:`faceledger.engine.Engine.pool`), match
here, and record the answers in batches: each batch's entries commit in one transaction,
and only then are its answers returned, in input order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from faceledger.engine import (
    Analysis,
    Engine,
    Failed,
    Found,
    embed_task,
    found_result,
    image_result,
    locate_task,
)
from faceledger.errors import InputError
from faceledger.gallery.indexed import IndexStats
from faceledger.images import ImageSource, sha256_of
from faceledger.ledger.audit import identify_summary, verify_summary
from faceledger.ledger.chain import LedgerRecord
from faceledger.operations.acting import Acting
from faceledger.operations.base import OperationsBase, Recorded
from faceledger.types import ImageResult, Threshold, Verification

T = TypeVar("T")

BATCH = 32
"""Most answers of a bulk search recorded in one transaction."""
LINGER = 0.02
"""Seconds a bulk search waits, after an answer, for the ones after it to join its
transaction: a slow stream is recorded and shown one answer at a time, a fast one
shares each commit (a few ms) and each catch-up of the index between many."""


def digests(sources: Iterable[ImageSource | str]) -> tuple[str, ...]:
    """sha256 of each input that can be read (an unreadable file is left out)."""
    found = []
    for source in sources:
        try:
            found.append(sha256_of(Path(source) if isinstance(source, str) else source))
        except (OSError, InputError):
            continue
    return tuple(found)


class SearchOperations(OperationsBase):
    @property
    def threshold(self) -> Threshold:
        """The decision threshold of a 1:1 comparison (verify), at the configured strictness."""
        return self.engine.threshold

    @property
    def search_threshold(self) -> Threshold:
        """The threshold a search of the gallery uses now, for its size (1:N)."""
        with self.inference() as engine:
            return engine.matcher().threshold

    def searchable(self) -> int:
        """How many templates a search compares against (raises ModelMismatchError when the
        gallery was enrolled with another embedder)."""
        with self.inference() as engine:
            return int(engine.matcher().index.size)

    def index_stats(self, rebuild: bool = False) -> IndexStats:
        """The vector index searches run over: kind, parameters, size, where it is saved
        and how it was opened (``rebuild``: from every template, now)."""
        with self.inference() as engine:
            return engine.index.rebuild() if rebuild else engine.index.stats

    def identify(self, acting: Acting, source: ImageSource, top: int = 1) -> Recorded[ImageResult]:
        """Every face in one image with its open-set decision (a subject or unknown).

        An input that cannot be used is recorded with its reason, then raises InputError."""
        recorded, error = self._identify(acting, source, top)
        if error is not None:
            raise error
        return recorded

    def identify_many(
        self,
        acting: Acting,
        paths: Iterable[Path],
        top: int = 1,
        *,
        workers: int | None = 1,
        count: int | None = None,
    ) -> Iterator[Recorded[ImageResult]]:
        """One recorded result per image, in input order; a bad image is a result carrying
        its error (also recorded), and the batch goes on.

        ``workers``: images read, detected and embedded at once (None or 0: every core;
        1: one after another in this thread). ``count``: how many paths there are, when
        ``paths`` is not a list (no more workers are started than images). Answers are
        matched here and recorded in batches (:data:`BATCH`), each batch's entries
        written before any of its answers is returned."""
        with self.inference() as engine:
            engine.matcher()  # fail early on an unusable gallery, before any image
            pool = engine.pool(
                embed_task, workers, items=_count(paths, count), local=self.inference
            )
        for batch in pool.batches(paths, BATCH, linger=LINGER):
            embedded = [done for done in batch if isinstance(done, Found)]
            with self.inference() as engine:  # one search of the index for the batch
                matched = iter(engine.results_from(embedded, top))
            results = [
                ImageResult(done.source, error=done.reason)
                if isinstance(done, Failed)
                else next(matched)
                for done in batch
            ]
            records = [
                acting.record(
                    "identify", identify_summary(r), inputs=_inputs(done), model=self.model_id
                )
                for r, done in zip(results, batch, strict=True)
            ]
            yield from self._recorded_batch(results, records)

    def detect_many(
        self,
        acting: Acting,
        paths: Iterable[Path],
        *,
        workers: int | None = 1,
        count: int | None = None,
        pixels: bool = False,
    ) -> Iterator[Recorded[tuple[ImageResult, Analysis | None]]]:
        """:meth:`detect` for many images, in input order, as :meth:`identify_many` does
        it (workers, batches recorded before they are returned); a bad image is a result
        carrying its error (recorded too), with no analysis. ``pixels``: each found
        image's analysis holds its pixels (read again here: workers hand back no pixels),
        e.g. to draw on; otherwise the analysis is None."""
        with self.inference() as engine:
            pool = engine.pool(
                locate_task, workers, items=_count(paths, count), local=self.inference
            )
            reader = engine
        for batch in pool.batches(paths, BATCH, linger=LINGER):
            results: list[tuple[ImageResult, Analysis | None]] = []
            records: list[LedgerRecord] = []
            for done in batch:
                inputs = _inputs(done)
                if isinstance(done, Failed):
                    results.append((ImageResult(done.source, error=done.reason), None))
                    summary: dict[str, object] = {"error": done.reason}
                else:
                    results.append((found_result(done, None), _pixels(reader, done, pixels)))
                    summary = {"faces": len(done.faces)}
                records.append(
                    acting.record("detect", summary, inputs=inputs, model=self.detector_id)
                )
            yield from self._recorded_batch(results, records)

    def _recorded_batch(
        self, values: list[T], records: list[LedgerRecord]
    ) -> Iterator[Recorded[T]]:
        """The values of one batch, once every one of their entries is written (one
        transaction)."""
        entries = self.ledger.append_many(records)
        for value, entry in zip(values, entries, strict=True):
            yield Recorded(value, entry)

    def _identify(
        self, acting: Acting, source: ImageSource, top: int
    ) -> tuple[Recorded[ImageResult], InputError | None]:
        inputs = digests([source])
        error: InputError | None = None
        try:
            with self.inference() as engine:
                result = engine.identify(source, top)
        except InputError as exc:
            result, error = ImageResult(str(source), error=exc.reason), exc
        record = acting.record(
            "identify", identify_summary(result), inputs=inputs, model=self.model_id
        )
        return Recorded(result, self._log(record)), error

    def verify(self, acting: Acting, a: ImageSource, b: ImageSource) -> Recorded[Verification]:
        """Compare the largest face of two images; recorded with the score and decision."""
        inputs = digests([a, b])
        try:
            with self.inference() as engine:
                result = engine.verify(a, b)
        except InputError as exc:  # a failed comparison is recorded too
            self._log(acting.record("verify", {"error": exc.reason}, inputs=inputs,
                                    model=self.model_id))  # fmt: skip
            raise
        record = acting.record("verify", verify_summary(result), inputs=inputs, model=self.model_id)
        return Recorded(result, self._log(record))

    def detect(self, acting: Acting, source: ImageSource) -> Recorded[tuple[ImageResult, Analysis]]:
        """The faces of one image (boxes, scores, landmarks); nobody is identified, but
        the search is on the record all the same (faces were located)."""
        inputs = digests([source])
        try:
            with self.inference() as engine:
                found = engine.analyze(source)
        except InputError as exc:
            self._log(acting.record("detect", {"error": exc.reason}, inputs=inputs,
                                    model=self.detector_id))  # fmt: skip
            raise
        with self.inference() as engine:
            result = image_result(found, None, engine.assess(found.image, found.faces))
        summary = {"faces": len(found.faces)}
        entry = self._log(acting.record("detect", summary, inputs=inputs, model=self.detector_id))
        return Recorded((result, found), entry)


def _inputs(done: Found | Failed) -> tuple[str, ...]:
    """What a bulk search is recorded on: the file's sha256, as :func:`digests` gives it
    (taken by the worker; nothing for a file that could not be read)."""
    return (done.sha256,) if done.sha256 else ()


def _count(paths: Iterable[Path], count: int | None) -> int | None:
    if count is None and isinstance(paths, list | tuple):
        return len(paths)
    return count


def _pixels(engine: Engine, found: Found, wanted: bool) -> Analysis | None:
    """The analysis of a located image with its pixels, read again (None when not wanted,
    or when the file can no longer be read: its answer stands, it is not drawn)."""
    if not wanted:
        return None
    try:
        image = engine.read(Path(found.source))
    except InputError:
        return None
    return Analysis(found.source, image, found.faces)
