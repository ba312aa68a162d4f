"""Searches on the record: identify, verify, detect. Each writes its ledger entry before
its answer is returned; a search that fails on its input is recorded too."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from faceledger.engine import Analysis, image_result
from faceledger.errors import InputError
from faceledger.gallery.indexed import IndexStats
from faceledger.images import ImageSource, sha256_of
from faceledger.ledger.audit import identify_summary, verify_summary
from faceledger.operations.acting import Acting
from faceledger.operations.base import OperationsBase, Recorded
from faceledger.types import ImageResult, Threshold, Verification


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
        """The decision threshold searches use (the embedder's, at the configured strictness)."""
        return self.engine.threshold

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
        self, acting: Acting, paths: Iterable[Path], top: int = 1
    ) -> Iterator[Recorded[ImageResult]]:
        """One recorded result per image; a bad image is a result carrying its error (also
        recorded), and the batch goes on."""
        with self.inference() as engine:
            engine.matcher()  # fail early on an unusable gallery, before any image
        for path in paths:
            yield self._identify(acting, path, top)[0]

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
        result = image_result(found, None)
        summary = {"faces": len(found.faces)}
        entry = self._log(acting.record("detect", summary, inputs=inputs, model=self.detector_id))
        return Recorded((result, found), entry)
