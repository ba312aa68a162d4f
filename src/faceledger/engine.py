"""The one place where a Config becomes a working pipeline.

image -> Detector -> quality gate -> Aligner -> Embedder -> Matcher over the gallery.

Models are created cheaply and loaded on first use; the gallery is opened on first use.
Batch methods (``identify_many``, ``detect_many``, ``enroll``) never stop at a bad input:
each result carries its own error and the caller decides the exit code.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy.engine import Connection

from faceledger.config import Config
from faceledger.embed.base import Embedder, create_embedder
from faceledger.errors import (
    AmbiguousFaceError,
    ConfigError,
    InputError,
    NoFaceError,
    StorageError,
)
from faceledger.faces.align import Aligner, canonical_crops, create_aligner
from faceledger.faces.detect.base import Detector, DetectorOptions, create_detector
from faceledger.faces.quality import sharpness, size_gate
from faceledger.gallery.indexed import GalleryIndex
from faceledger.gallery.matcher import Matcher
from faceledger.gallery.store import Gallery, NewTemplate
from faceledger.images import ImageSource, load_image, sha256_of
from faceledger.models.catalog import STRICTNESS_FMR, ModelCard, get_card, get_profile
from faceledger.models.store import ModelStore
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
        self.detector: Detector = create_detector(self.detector_card, self.store, options)
        self.aligner: Aligner = create_aligner(self.embedder_card, self.store)
        self.embedder: Embedder = create_embedder(self.embedder_card, self.store, config.threads)
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

    # ---- lifecycle ----------------------------------------------------------------------

    def load(self) -> None:
        """Resolve, verify and load every model now (otherwise it happens on first use)."""
        self.detector.load()
        self.aligner.load()
        self.embedder.load()

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
        (here or by another process: a server sees the CLI's enrollments)."""
        return self.index.matcher(self.threshold)

    def identify(self, src: ImageSource, top: int = 1) -> ImageResult:
        """Every face in one image with its open-set decision; raises InputError."""
        found = self.analyze(src)
        matches = self.matcher().match(self.embed(found.image, found.faces), top)
        return image_result(found, matches)

    def identify_many(self, paths: Iterable[Path], top: int = 1) -> Iterator[ImageResult]:
        self.matcher()  # fail early on an unusable gallery, before any image
        for path in paths:
            try:
                yield self.identify(path, top)
            except InputError as exc:
                yield ImageResult(str(path), error=exc.reason)

    def locate(self, src: ImageSource) -> ImageResult:
        """The faces of one image, nobody identified; raises InputError."""
        return image_result(self.analyze(src), None)

    def detect_many(self, paths: Iterable[Path]) -> Iterator[tuple[ImageResult, Analysis | None]]:
        for path in paths:
            try:
                found = self.analyze(path)
            except InputError as exc:
                yield ImageResult(str(path), error=exc.reason), None
                continue
            yield image_result(found, None), found

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
        score = float(ea.vectors[0] @ eb.vectors[0])
        faces = (face_result(picked[0].faces, 0, None), face_result(picked[1].faces, 0, None))
        return Verification(
            score, self.threshold, score >= self.threshold.value, faces, tuple(notes)
        )

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
    ) -> EnrollReport:
        """Enroll one subject from ``paths`` in one transaction; bad photos are reported.

        ``record(conn, report)`` runs inside that transaction before it commits (the audit
        ledger entry), so the enrollment and its record land together or not at all."""
        self.gallery.require_model(self.model_id)
        if not legal_basis and not self.gallery.has_subject(name):
            raise ConfigError(
                f"subject {name!r} is new: record the legal basis for enrolling them (--basis)"
            )
        new: list[NewTemplate] = []
        done: list[str] = []
        failures: list[tuple[str, str]] = []
        for path in paths:
            try:
                new.append(self._template(path, largest))
                done.append(str(path))
            except InputError as exc:
                failures.append((str(path), exc.reason))
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
            crop_png=_png(canon[0]),
            crop_geometry={
                "box": geometry.boxes[0].tolist(),
                "landmarks": geometry.landmarks[0].tolist(),
            },
        )

    def reembed(self, record: Callable[[Connection, int], None] | None = None) -> int:
        """Re-embed every stored crop with this engine's embedder (one transaction);
        ``record(conn, count)`` runs inside it before the commit (the ledger entry)."""
        vectors: dict[int, np.ndarray] = {}
        for stored in self.gallery.crops():
            crop = np.asarray(Image.open(io.BytesIO(stored.crop_png)).convert("RGB"))
            geometry = stored.geometry
            face = Faces(np.array([geometry["box"]]), np.ones(1), np.array([geometry["landmarks"]]))
            vectors[stored.template_id] = self.embed(crop, face).vectors[0]
        if not vectors:
            raise StorageError(f"{self.config.db}: the gallery has no templates to re-embed")

        def within(conn: Connection, _: bool) -> None:
            if record is not None:
                record(conn, len(vectors))

        self.gallery.replace_embeddings(self.model_id, vectors, within)
        self._matcher = None
        return len(vectors)


def _no_face_reason(min_size: int) -> str:
    return f"no face found (faces must be at least {min_size} px)"


def _png(image: ImageArray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def face_result(faces: Faces, i: int, match: Match | None) -> FaceResult:
    x1, y1, x2, y2 = (float(v) for v in faces.boxes[i])
    landmarks = tuple((float(x), float(y)) for x, y in faces.landmarks[i])
    return FaceResult((x1, y1, x2, y2), float(faces.scores[i]), landmarks, match)


def image_result(found: Analysis, matches: list[Match] | None) -> ImageResult:
    faces = tuple(
        face_result(found.faces, i, matches[i] if matches is not None else None)
        for i in range(len(found.faces))
    )
    h, w = found.image.shape[:2]
    return ImageResult(found.source, faces, None, (w, h))
