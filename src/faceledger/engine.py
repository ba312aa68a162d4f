"""The one place where a Config becomes a working pipeline.

image -> Detector -> quality gate -> Aligner -> Embedder -> Matcher over the gallery.

Models are created cheaply and loaded on first use; the gallery is opened on first use.
Batch methods (``identify_many``, ``detect_many``, ``enroll``) never stop at a bad input:
each result carries its own error and the caller decides the exit code.

Bulk work (:meth:`Engine.pool`) runs the per-image stages -- read, detect, align, embed --
on several workers, each with its own engine from the same config, and hands back small
values (:class:`Found`, :class:`Failed`, templates) in input order; matching
(:meth:`Engine.results_from`), recording and showing stay with the caller.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
from sqlalchemy.engine import Connection

from faceledger.config import Config
from faceledger.embed.base import Embedder, create_embedder
from faceledger.errors import (
    AmbiguousFaceError,
    ConfigError,
    InputError,
    NoFaceError,
    PoorFaceError,
    StorageError,
)
from faceledger.faces.align import Aligner, canonical_crops, create_aligner
from faceledger.faces.crops import decode_crop, encode_crop
from faceledger.faces.detect.base import Detector, DetectorOptions, create_detector
from faceledger.faces.quality import (
    UNCALIBRATED_FLOOR,
    Quality,
    assess,
    measure,
    sharpness,
    size_gate,
)
from faceledger.gallery.indexed import GalleryIndex
from faceledger.gallery.matcher import Matcher
from faceledger.gallery.store import Gallery, NewTemplate, StoredCrop
from faceledger.images import ImageSource, load_image, sha256_of
from faceledger.models.catalog import STRICTNESS_FMR, ModelCard, get_card, get_profile
from faceledger.models.store import ModelStore
from faceledger.runtime.onnx import RuntimeOptions
from faceledger.runtime.pool import Kind, OrderedPool, available_cores, resolve_workers
from faceledger.types import (
    Embeddings,
    FaceResult,
    Faces,
    ImageArray,
    ImageResult,
    Match,
    Threshold,
    Verification,
)


@dataclass(frozen=True)
class EnrollReport:
    """What happened to one subject's enrollment."""

    subject: str
    created: bool = False
    enrolled: tuple[str, ...] = ()
    failures: tuple[tuple[str, str], ...] = ()
    """(source, reason) for every input that was not enrolled."""
    digests: tuple[str, ...] = ()
    """sha256 of each enrolled photo, in the order of ``enrolled``."""


@dataclass(frozen=True)
class Analysis:
    """One decoded image with its gated faces."""

    source: str
    image: ImageArray
    faces: Faces
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Found:
    """What a bulk worker hands back for one image: its gated faces (largest first), their
    embeddings when the task embeds, and the image's (width, height); never the pixels."""

    source: str
    faces: Faces
    size: tuple[int, int]
    embeddings: Embeddings | None = None
    sha256: str | None = None
    """The file's sha256, taken by the worker (what the search is recorded with)."""
    quality: tuple[Quality, ...] = ()
    """Each face's quality, in the order of ``faces``."""


@dataclass(frozen=True)
class Failed:
    """An input a bulk worker could not use: its name and why (an InputError's reason)."""

    source: str
    reason: str
    sha256: str | None = None
    """The file's sha256 when it could be read at all (None: it could not)."""


T = TypeVar("T")
R = TypeVar("R")

PROCESS_MIN_ITEMS = 16
"""Inputs per worker process below which fewer processes start: one costs about a second
to start (Python, dlib and the models loaded again), what dlib takes for some 10-16
photos, so a handful of photos is quicker in this process."""


class Engine:
    """A detector, an aligner, an embedder and a gallery wired from one Config."""

    def __init__(self, config: Config, gallery: Gallery | None = None) -> None:
        self.config = config
        self.profile = get_profile(config.profile)
        self.store = ModelStore(
            cache_dir=config.model_cache,
            mirror=config.model_mirror,
            explicit=config.model_paths,
            offline=config.offline,
        )
        self.detector_card: ModelCard = get_card(config.detector or self.profile.detector)
        self.embedder_card: ModelCard = get_card(config.embedder or self.profile.embedder)
        for card, kind in ((self.detector_card, "detector"), (self.embedder_card, "embedder")):
            if card.kind != kind:
                raise ConfigError(f"model {card.name} is a {card.kind}, not a {kind}")
        options = DetectorOptions(
            score_threshold=config.det_threshold or self.detector_card.score_threshold,
            threads=config.threads,
        )
        runtime = RuntimeOptions(config.threads, tuple(config.providers))
        self.detector: Detector = create_detector(self.detector_card, self.store, options, runtime)
        self.aligner: Aligner = create_aligner(self.embedder_card, self.store)
        self.embedder: Embedder = create_embedder(self.embedder_card, self.store, runtime=runtime)
        own_embedder = self.embedder_card.name == self.profile.embedder
        self.flip = (self.profile.flip and own_embedder) if config.flip is None else config.flip
        """A profile's flip choice is calibrated for its own embedder: another embedder
        (``--embedder``) runs without flip unless asked (``flip``)."""
        self.model_id = self.embedder_card.name + ("+flip" if self.flip else "")
        """What the gallery's templates are stamped with: flip vectors never mix with plain."""
        self._gallery: Gallery | None = gallery
        self._owns_gallery = gallery is None
        self._matcher: Matcher | None = None
        self._revision = -1

    @functools.cached_property
    def threshold(self) -> Threshold:
        """The decision threshold (raises ConfigError when the embedder has none calibrated
        for this set-up; only matching needs one, so benchmarks run without)."""
        fmr = STRICTNESS_FMR[self.config.strictness]
        return Threshold(
            self.embedder_card.threshold_for(fmr, self.flip),
            fmr,
            self.embedder_card.calibration,
            self.config.strictness,
        )

    @functools.cached_property
    def quality_floor(self) -> float:
        """The face-quality score below which no one is named: the embedder's calibrated
        floor, raised (never lowered) by ``min_quality``."""
        floor = self.embedder_card.floor_for(self.flip)
        calibrated = UNCALIBRATED_FLOOR if floor is None else floor
        wanted = self.config.min_quality
        if 0 < wanted < calibrated:
            raise ConfigError(
                f"min_quality {wanted:g} is below the calibrated face-quality floor "
                f"{calibrated:g} of {self.model_id}: a minimum can only be stricter than the "
                "floor"
            )
        return max(calibrated, wanted)

    def assess(self, image: ImageArray, faces: Faces) -> tuple[Quality, ...]:
        """Each face's quality against the floor and the configured minimums."""
        factors = measure(image, faces)
        return tuple(assess(factors, self.quality_floor, self.config.quality_minimums))

    # ---- lifecycle ----------------------------------------------------------------------

    def load(self) -> None:
        """Resolve, verify and load every model now (otherwise it happens on first use)."""
        self.detector.load()
        self.aligner.load()
        self.embedder.load()
        _ = self.quality_floor  # a looser --min-quality is refused before any work

    @property
    def gallery(self) -> Gallery:
        if self._gallery is None:
            self._gallery = Gallery(self.config.db)
        return self._gallery

    def close(self) -> None:
        if self._gallery is not None and self._owns_gallery:
            self._gallery.close()
            self._gallery = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- stages -------------------------------------------------------------------------

    def read(self, src: ImageSource) -> ImageArray:
        c = self.config
        return load_image(
            src, c.max_pixels, c.max_bytes,
            max_decode_bytes=c.max_decode_bytes, decode_budget_total=c.decode_budget_total,
        )  # fmt: skip

    def detect(self, image: ImageArray, min_face: int | None = None) -> Faces:
        """Faces in an RGB image that pass the size gate, largest first."""
        h, w = image.shape[:2]
        faces = self.detector.detect(image).clipped(w, h)
        return size_gate(faces, min_face or self.config.min_face).sorted_by_area()

    def embed(self, image: ImageArray, faces: Faces) -> Embeddings:
        return self.embed_crops(self.aligner.align(image, faces))

    def embed_crops(self, crops: np.ndarray) -> Embeddings:
        """Embeddings of aligned crops, with flip augmentation when the engine uses it."""
        vectors = self.embedder.embed(crops).vectors
        if self.flip and len(crops):
            mirrored = np.ascontiguousarray(crops[:, :, ::-1])
            vectors = vectors + self.embedder.embed(mirrored).vectors
        return Embeddings(vectors, self.model_id)

    def analyze(self, src: ImageSource, min_face: int | None = None) -> Analysis:
        image = self.read(src)
        return Analysis(str(src), image, self.detect(image, min_face))

    def embed_image(self, src: ImageSource) -> Found:
        """Everything :meth:`identify` does to one image but matching: read, detect, align,
        embed (what a bulk worker does; :meth:`result_from` matches). Raises InputError."""
        found = self.analyze(src)
        h, w = found.image.shape[:2]
        embeddings = self.embed(found.image, found.faces)
        return Found(
            found.source, found.faces, (w, h), embeddings,
            quality=self.assess(found.image, found.faces),
        )  # fmt: skip

    def locate_image(self, src: ImageSource) -> Found:
        """The faces of one image without its pixels (a bulk detection); raises InputError."""
        found = self.analyze(src)
        h, w = found.image.shape[:2]
        return Found(
            found.source, found.faces, (w, h), quality=self.assess(found.image, found.faces)
        )

    # ---- matching -----------------------------------------------------------------------

    @functools.cached_property
    def index(self) -> GalleryIndex:
        """The gallery's templates of this engine's model in a vector index, kept in a file
        beside the gallery and caught up with every change (see faceledger.gallery.indexed)."""
        return GalleryIndex(
            self.gallery, self.model_id, self.embedder_card.embedding_dim, self.config.index
        )

    def matcher(self) -> Matcher:
        """The matcher over the gallery's templates, caught up with every change made so far
        (here or by another process: a server sees the CLI's enrollments), with the
        threshold for a gallery of that size (:meth:`identification_threshold`)."""
        return self.index.matcher(self.identification_threshold)

    def matcher_within(self, subject_ids: frozenset[int]) -> Matcher:
        """A matcher over only the templates of ``subject_ids`` (a camera's watch lists),
        with the threshold for that many templates; caught up like :meth:`matcher`."""
        return self.index.matcher_within(subject_ids, self.identification_threshold)

    def identification_threshold(self, templates: int) -> Threshold:
        """The threshold of a search of ``templates`` templates: set so that a search for
        someone not enrolled names anyone at most at the strictness's rate (the false-
        positive identification rate, FPIR). Each template is one chance of a false match,
        so one comparison may false-match at ``FPIR / templates`` at most: a gallery of
        10,000 at FPIR 1e-3 needs the threshold of FMR 1e-7, not that of 1e-3."""
        fpir = STRICTNESS_FMR[self.config.strictness]
        fmr = fpir / max(1, templates)
        value, extrapolated = self.embedder_card.threshold_at(fmr, self.flip)
        return Threshold(
            value, fmr, self.embedder_card.calibration, self.config.strictness,
            fpir=fpir, templates=templates, extrapolated=extrapolated,
        )  # fmt: skip

    def identify(self, src: ImageSource, top: int = 1) -> ImageResult:
        """Every face in one image with its open-set decision; raises InputError."""
        found = self.analyze(src)
        matches = self.matcher().match(self.embed(found.image, found.faces), top)
        quality = self.assess(found.image, found.faces)
        return image_result(found, gated(matches, quality), quality)

    def result_from(
        self, found: Found, top: int = 1, matcher: Matcher | None = None
    ) -> ImageResult:
        """The answer :meth:`identify` gives, for an image a worker embedded
        (:meth:`embed_image`). ``matcher``: one already caught up with the gallery (a bulk
        job takes one per batch of answers), else this engine's."""
        if found.embeddings is None:
            raise ValueError(f"{found.source}: located only, not embedded: nothing to match")
        matches = (matcher or self.matcher()).match(found.embeddings, top)
        return found_result(found, gated(matches, found.quality))

    def results_from(self, found: Sequence[Found], top: int = 1) -> list[ImageResult]:
        """:meth:`result_from` for several images at once, their faces matched in one
        search of the index (a bulk job's batch: one index call, not one per image)."""
        vectors = []
        for item in found:
            if item.embeddings is None:
                raise ValueError(f"{item.source}: located only, not embedded: nothing to match")
            if len(item.embeddings):
                vectors.append(item.embeddings.vectors)
        matches: list[Match] = []
        if vectors:
            matches = self.matcher().match(Embeddings(np.concatenate(vectors), self.model_id), top)
        results, start = [], 0
        for item in found:
            end = start + len(item.faces)
            results.append(found_result(item, gated(matches[start:end], item.quality)))
            start = end
        return results

    def identify_many(self, paths: Iterable[Path], top: int = 1) -> Iterator[ImageResult]:
        self.matcher()  # fail early on an unusable gallery, before any image
        for path in paths:
            try:
                yield self.identify(path, top)
            except InputError as exc:
                yield ImageResult(str(path), error=exc.reason)

    def locate(self, src: ImageSource) -> ImageResult:
        """The faces of one image, nobody identified; raises InputError."""
        found = self.analyze(src)
        return image_result(found, None, self.assess(found.image, found.faces))

    def detect_many(self, paths: Iterable[Path]) -> Iterator[tuple[ImageResult, Analysis | None]]:
        for path in paths:
            try:
                found = self.analyze(path)
            except InputError as exc:
                yield ImageResult(str(path), error=exc.reason), None
                continue
            yield image_result(found, None, self.assess(found.image, found.faces)), found

    def verify(self, a: ImageSource, b: ImageSource) -> Verification:
        """Compare the largest face of two images."""
        notes: list[str] = []
        picked: list[Analysis] = []
        for path in (a, b):
            found = self.analyze(path)
            if len(found.faces) == 0:
                raise NoFaceError(str(path), _no_face_reason(self.config.min_face))
            if len(found.faces) > 1:
                notes.append(f"{path}: {len(found.faces)} faces; compared the largest")
            picked.append(Analysis(found.source, found.image, found.faces.largest()))
        ea, eb = (self.embed(p.image, p.faces) for p in picked)
        qa, qb = (self.assess(p.image, p.faces)[0] for p in picked)
        score = float(ea.vectors[0] @ eb.vectors[0])
        faces = (
            face_result(picked[0].faces, 0, None, (qa,)),
            face_result(picked[1].faces, 0, None, (qb,)),
        )
        same = score >= self.threshold.value and qa.sufficient and qb.sufficient
        return Verification(score, self.threshold, same, faces, tuple(notes), (qa, qb))

    # ---- enrollment ---------------------------------------------------------------------

    def enroll(
        self,
        name: str,
        paths: Sequence[ImageSource],
        legal_basis: str | None,
        *,
        largest: bool = False,
        all_or_nothing: bool = False,
        progress: Callable[[str], None] | None = None,
        record: Callable[[Connection, EnrollReport], None] | None = None,
        workers: int | None = 1,
        prepared: Iterable[NewTemplate | Failed] | None = None,
    ) -> EnrollReport:
        """Enroll one subject from ``paths`` in one transaction; bad photos are reported.

        ``record(conn, report)`` runs inside that transaction before it commits (the audit
        ledger entry), so the enrollment and its record land together or not at all.
        ``workers``: photos read, detected and embedded at once (:meth:`pool`; None: every
        core). ``prepared``: the photos' templates made already, one per path in order
        (:meth:`templates`; a bulk enrollment makes those of many subjects at once)."""
        self.gallery.require_model(self.model_id)
        if not legal_basis and not self.gallery.has_subject(name):
            raise ConfigError(
                f"subject {name!r} is new: record the legal basis for enrolling them (--basis)"
            )
        new: list[NewTemplate] = []
        done: list[str] = []
        failures: list[tuple[str, str]] = []
        if prepared is None:
            prepared = self.templates(paths, largest, workers)
        for path, made in zip(paths, prepared, strict=True):
            if isinstance(made, Failed):
                failures.append((str(path), made.reason))
            else:
                new.append(made)
                done.append(str(path))
            if progress is not None:
                progress(str(path))
        if not new or (failures and all_or_nothing):
            if new:
                failures.append((name, "nothing enrolled: another photo failed (--all-or-nothing)"))
            return EnrollReport(name, False, (), tuple(failures))
        reported = tuple(failures)
        digests = tuple(t.source_sha256 for t in new)

        def within(conn: Connection, created: bool) -> None:
            if record is not None:
                record(conn, EnrollReport(name, created, tuple(done), reported, digests))

        created = self.gallery.enroll(name, legal_basis, new, within)
        self._matcher = None
        return EnrollReport(name, created, tuple(done), reported, digests)

    def templates(
        self,
        paths: Iterable[ImageSource],
        largest: bool = False,
        workers: int | None = 1,
        *,
        count: int | None = None,
    ) -> Generator[NewTemplate | Failed, None, None]:
        """The template of each photo, in order, made on ``workers`` workers; a photo that
        cannot be enrolled (unreadable, no face, several faces without ``largest``) is a
        :class:`Failed` with its reason. ``count``: how many paths (default: len(paths))."""
        if count is None and isinstance(paths, Sequence):
            count = len(paths)
        task = functools.partial(template_task, largest=largest)
        return self.pool(task, workers, items=count).map(paths)

    def _template(self, path: ImageSource, largest: bool) -> NewTemplate:
        found = self.analyze(path, self.config.min_enroll_face)
        if len(found.faces) == 0:
            raise NoFaceError(str(path), _no_face_reason(self.config.min_enroll_face))
        if len(found.faces) > 1 and not largest:
            raise AmbiguousFaceError(
                str(path),
                f"{len(found.faces)} faces found where one was needed; ask for the largest "
                "face to enroll it (CLI --largest, API largest=true)",
            )
        face = found.faces.largest()
        quality = self.assess(found.image, face)[0]
        if not quality.sufficient:
            raise PoorFaceError(
                str(path), f"face too poor to enroll: {quality.reason} (quality "
                f"{quality.score:.2f}, floor {quality.floor:.2f})",
            )  # fmt: skip
        crops = self.aligner.align(found.image, face)
        vector = self.embed_crops(crops).vectors[0]
        canon, geometry = canonical_crops(found.image, face)
        return NewTemplate(
            embedding=vector,
            model_id=self.model_id,
            source_name=path.name,
            source_sha256=sha256_of(path),
            quality=float(sharpness(crops)[0]),
            det_score=float(face.scores[0]),
            crop_png=encode_crop(canon[0]),
            crop_geometry={
                "box": geometry.boxes[0].tolist(),
                "landmarks": geometry.landmarks[0].tolist(),
            },
            quality_score=round(float(quality.score), 4),
        )

    def reembed(
        self, record: Callable[[Connection, int], None] | None = None, workers: int | None = 1
    ) -> int:
        """Re-embed every stored crop with this engine's embedder (one transaction);
        ``record(conn, count)`` runs inside it before the commit (the ledger entry).
        ``workers``: crops embedded at once (:meth:`pool`; None: every core)."""
        vectors: dict[int, np.ndarray] = {}
        count = sum(self.gallery.model_counts().values())
        for template_id, vector in self.pool(reembed_task, workers, items=count).map(
            self.gallery.crops()
        ):
            vectors[template_id] = vector
        if not vectors:
            raise StorageError(f"{self.config.db}: the gallery has no templates to re-embed")

        def within(conn: Connection, _: bool) -> None:
            if record is not None:
                record(conn, len(vectors))

        self.gallery.replace_embeddings(self.model_id, vectors, within)
        self._matcher = None
        return len(vectors)

    def embed_stored(self, stored: StoredCrop) -> np.ndarray:
        """The vector of one stored template crop, with this engine's embedder."""
        crop = decode_crop(stored.crop_png)
        geometry = stored.geometry
        face = Faces(np.array([geometry["box"]]), np.ones(1), np.array([geometry["landmarks"]]))
        return self.embed(crop, face).vectors[0]

    # ---- bulk work ----------------------------------------------------------------------

    @property
    def pool_kind(self) -> Kind:
        """How bulk workers run: processes where a model holds Python's GIL while it
        computes (dlib: two threads ran at 1.06x one), threads otherwise (onnxruntime)."""
        cards = (self.detector_card, self.embedder_card)
        return "process" if any(c.name.startswith("dlib") for c in cards) else "thread"

    def worker_config(self, workers: int) -> Config:
        """This engine's config for one of ``workers`` bulk workers: the configured
        inference threads each, or for ``threads = 0`` (all cores) the cores shared out."""
        threads = self.config.threads or max(1, available_cores() // workers)
        return self.config.model_copy(update={"threads": threads})

    def pool(
        self,
        task: Callable[[Engine, T], R],
        workers: int | None = 1,
        *,
        items: int | None = None,
        local: Callable[[], contextlib.AbstractContextManager[Engine]] | None = None,
        shared_gallery: bool = False,
        per_process: int = PROCESS_MIN_ITEMS,
    ) -> OrderedPool[Engine, T, R]:
        """A pool running ``task(engine, item)`` for many items, answers in input order
        (:class:`faceledger.runtime.pool.OrderedPool`).

        ``workers``: how many at once (None or 0: every core; never more than ``items``).
        Each worker has its own engine from this config (:meth:`worker_config`), in a
        thread or a process (:attr:`pool_kind`; no more processes than one per
        ``per_process`` items, default :data:`PROCESS_MIN_ITEMS`; 1 for items as long as
        a video file). A process worker's task must be a module-level function, and
        processes are started with ``spawn``: a script calling a bulk operation needs the
        ``if __name__ == "__main__":`` guard. One worker runs in the caller's thread on
        this engine, or on the one ``local()`` gives (e.g. behind a lock).
        ``shared_gallery``: thread workers read this engine's gallery (process workers
        open their own)."""
        kind = self.pool_kind
        count = resolve_workers(workers)
        if items is not None:
            per_worker = per_process if kind == "process" else 1
            count = max(1, min(count, items // max(1, per_worker)))
        config = self.worker_config(count)
        if kind == "thread" and shared_gallery:
            factory = functools.partial(Engine, config, gallery=self.gallery)
        else:
            factory = functools.partial(Engine, config)
        return OrderedPool(
            factory,
            task,
            count,
            kind=kind,
            local=local or (lambda: contextlib.nullcontext(self)),
            close=Engine.close,
        )


def embed_task(engine: Engine, src: ImageSource) -> Found | Failed:
    """A bulk identification's work on one image: everything but matching (and the
    file's sha256, so that the caller, which records it, need not read it again)."""
    try:
        found = engine.embed_image(src)
    except InputError as exc:
        return Failed(str(src), exc.reason, _sha256(src))
    return replace(found, sha256=_sha256(src))


def locate_task(engine: Engine, src: ImageSource) -> Found | Failed:
    """A bulk detection's work on one image (with the file's sha256)."""
    try:
        found = engine.locate_image(src)
    except InputError as exc:
        return Failed(str(src), exc.reason, _sha256(src))
    return replace(found, sha256=_sha256(src))


def _sha256(src: ImageSource) -> str | None:
    try:
        return sha256_of(src)
    except (OSError, InputError):
        return None


def template_task(engine: Engine, src: ImageSource, largest: bool = False) -> NewTemplate | Failed:
    """A bulk enrollment's work on one photo: its template, or why it has none."""
    try:
        return engine._template(src, largest)
    except InputError as exc:
        return Failed(str(src), exc.reason)


def reembed_task(engine: Engine, stored: StoredCrop) -> tuple[int, np.ndarray]:
    """Re-embedding's work on one stored crop: (template id, new vector)."""
    return stored.template_id, engine.embed_stored(stored)


def _no_face_reason(min_size: int) -> str:
    return f"no face found (faces must be at least {min_size} px)"


def gated(matches: Sequence[Match], quality: Sequence[Quality]) -> list[Match]:
    """Each face's match with its quality; a face below the floor names no one: its answer
    is ``insufficient_quality``, with no score (-1) and no candidates, whatever it scored."""
    if len(quality) != len(matches):  # a face without its quality is never named
        raise ValueError(f"{len(matches)} matches but {len(quality)} qualities measured")
    out = []
    for match, q in zip(matches, quality, strict=True):
        if q.sufficient:
            out.append(replace(match, quality=q))
        else:
            out.append(Match(None, -1.0, match.threshold, (), q))
    return out


def face_result(
    faces: Faces, i: int, match: Match | None, quality: Sequence[Quality] = ()
) -> FaceResult:
    x1, y1, x2, y2 = (float(v) for v in faces.boxes[i])
    landmarks = tuple((float(x), float(y)) for x, y in faces.landmarks[i])
    q = quality[i] if i < len(quality) else None
    return FaceResult((x1, y1, x2, y2), float(faces.scores[i]), landmarks, match, q)


def found_result(found: Found, matches: list[Match] | None) -> ImageResult:
    """The answer for one image a bulk worker handled (matched when ``matches``)."""
    faces = tuple(
        face_result(found.faces, i, matches[i] if matches is not None else None, found.quality)
        for i in range(len(found.faces))
    )
    return ImageResult(found.source, faces, None, found.size)


def image_result(
    found: Analysis, matches: list[Match] | None, quality: Sequence[Quality] = ()
) -> ImageResult:
    faces = tuple(
        face_result(found.faces, i, matches[i] if matches is not None else None, quality)
        for i in range(len(found.faces))
    )
    h, w = found.image.shape[:2]
    return ImageResult(found.source, faces, None, (w, h))
