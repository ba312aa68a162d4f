"""identify, verify, detect: each answer written to the audit ledger before it is sent."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from pydantic import AfterValidator, BaseModel, Field

from faceledger.access import ApiKey, Permission
from faceledger.api.auth import acting, require, service
from faceledger.api.uploads import read_upload
from faceledger.errors import ConfigError
from faceledger.images import sha256_of
from faceledger.text import free_text
from faceledger.types import ImageResult

router = APIRouter(prefix="/v1", tags=["search"])
Operator = Annotated[ApiKey, Depends(require(Permission.search))]

PURPOSE_MIN, PURPOSE_MAX = 3, 500


def real_purpose(text: str) -> str:
    """``text`` as the ledger will keep it (:func:`faceledger.text.free_text`: control
    characters dropped, NFC, stripped), refused (a 422) when too little is left to say why
    a search is made."""
    try:
        cleaned = free_text(text, "purpose", PURPOSE_MAX, required=True) or ""
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if len(cleaned) < PURPOSE_MIN:
        raise ValueError(
            f"purpose {cleaned!r} is too short to say why this search is made "
            f"(at least {PURPOSE_MIN} characters besides spaces and control characters)"
        )
    return cleaned


Purpose = Annotated[
    str,
    Form(
        min_length=PURPOSE_MIN,
        max_length=PURPOSE_MAX,
        description="why this search is made (recorded in the audit ledger); spaces and "
        "control characters alone are refused",
    ),
    AfterValidator(real_purpose),
]
CaseRef = Annotated[
    str | None, Form(max_length=200, description="case or ticket reference (recorded)")
]


class Candidate(BaseModel):
    subject: str
    score: float


class QualityAnswer(BaseModel):
    score: float = Field(description="the face's quality score, 0-1 (its weakest factor)")
    floor: float = Field(description="the calibrated floor in force: below it no one is named")
    sufficient: bool
    reason: str | None = Field(None, description="why the face is too poor to decide")
    factors: dict[str, float]


class Face(BaseModel):
    box: list[float]
    det_score: float
    decision: Literal["match", "unknown", "insufficient_quality"] | None = Field(
        None,
        description="match: subject named; unknown: no one enrolled scored above the "
        "threshold; insufficient_quality: the face is below the quality floor, so no one "
        "is named whatever it scored (see quality.reason); absent when not identified",
    )
    quality: QualityAnswer | None = None
    subject: str | None = None
    score: float | None = None
    threshold: float | None = None
    threshold_fmr: float | None = None
    threshold_fpir: float | None = Field(
        None,
        description="the share of searches for someone not enrolled that name anyone at this "
        "threshold, for the gallery's size (threshold_fmr is per comparison)",
    )
    candidates: list[Candidate] = []
    landmarks: list[list[float]] | None = None


class ImageAnswer(BaseModel):
    image: str
    image_sha256: str
    faces: list[Face]
    ledger_seq: int


class VerifyAnswer(BaseModel):
    images: list[str]
    score: float
    threshold: float
    threshold_fmr: float
    same: bool
    decision: Literal["same", "different", "insufficient_quality"]
    reason: str | None = None
    notes: list[str]
    ledger_seq: int


def _faces(result: ImageResult) -> list[Face]:
    return [Face(**f.to_dict()) for f in result.faces]


@router.post("/identify", response_model=ImageAnswer)
def identify(
    request: Request,
    key: Operator,
    image: Annotated[UploadFile, File(description="the photo to search")],
    purpose: Purpose,
    case_ref: CaseRef = None,
    top: Annotated[int, Form(ge=1, le=20, description="candidates per face")] = 1,
) -> Any:
    """Who is in this photo? Every face gets a ``decision``: a subject (``match``),
    ``unknown``, or ``insufficient_quality`` (too poor to decide, with the reason), with its
    score and the calibrated threshold. Requires a ``purpose``; the search is recorded (a photo
    that cannot be used too, with its reason, before the 422)."""
    svc = service(request)
    blob = read_upload(image, svc.config.max_upload, "image")
    answer = svc.ops.identify(acting(key, purpose, case_ref), blob, top)
    result = answer.value
    known = sum(1 for f in result.faces if f.match is not None and f.match.known)
    svc.metrics.faces.inc(len(result.faces))
    svc.metrics.matches.inc(known)
    svc.metrics.unknowns.inc(len(result.faces) - known)
    return ImageAnswer(
        image=blob.name, image_sha256=sha256_of(blob), faces=_faces(result), ledger_seq=answer.seq
    )


@router.post("/verify", response_model=VerifyAnswer)
def verify(
    request: Request,
    key: Operator,
    image_a: Annotated[UploadFile, File(description="first photo")],
    image_b: Annotated[UploadFile, File(description="second photo")],
    purpose: Purpose,
    case_ref: CaseRef = None,
) -> Any:
    """Are the main (largest) faces of two photos the same person? Recorded with its
    purpose."""
    svc = service(request)
    a = read_upload(image_a, svc.config.max_upload, "image_a")
    b = read_upload(image_b, svc.config.max_upload, "image_b")
    answer = svc.ops.verify(acting(key, purpose, case_ref), a, b)
    result = answer.value
    return VerifyAnswer(
        images=[a.name, b.name],
        score=round(result.score, 4),
        threshold=round(result.threshold.value, 4),
        threshold_fmr=result.threshold.fmr,
        same=result.same,
        decision=result.decision,
        reason=result.reason,
        notes=list(result.notes),
        ledger_seq=answer.seq,
    )


@router.post("/detect", response_model=ImageAnswer)
def detect(
    request: Request,
    key: Operator,
    image: Annotated[UploadFile, File(description="the photo")],
    purpose: Annotated[str | None, Form(max_length=500)] = None,
) -> Any:
    """Faces in a photo (boxes, scores, five landmarks); nobody is identified, but the
    search is recorded all the same."""
    svc = service(request)
    blob = read_upload(image, svc.config.max_upload, "image")
    answer = svc.ops.detect(acting(key, purpose), blob)
    result, _ = answer.value
    return ImageAnswer(
        image=blob.name, image_sha256=sha256_of(blob), faces=_faces(result), ledger_seq=answer.seq
    )
