"""Subjects (with their legal basis and watch lists) and their templates; erasure."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from faceledger.access import ApiKey, Permission
from faceledger.api.auth import acting, ops, require, service
from faceledger.api.errors import ApiError
from faceledger.api.params import SQL_ID_MAX, crop_response
from faceledger.api.uploads import read_upload
from faceledger.errors import ConfigError, NotFoundError
from faceledger.operations.subjects import BASIS_MAX
from faceledger.text import NAME_MAX, free_text, subject_name

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])
Reader = Annotated[ApiKey, Depends(require(Permission.subjects_read))]
Writer = Annotated[ApiKey, Depends(require(Permission.subjects_write))]
NAME_PATH_MAX = 1000
"""The longest name segment looked up: more than a new name may hold (:data:`NAME_MAX`),
for galleries made before names were checked, and their names encoded twice."""
MAX_PHOTOS = 50


def new_name(text: str) -> str:
    """A new subject's name, by the rule every front end shares
    (:func:`faceledger.text.subject_name`); refused with a 422 that names the character."""
    try:
        return subject_name(text)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def real_basis(text: str) -> str:
    """A legal basis as it is kept (:func:`faceledger.text.free_text`); refused with a 422
    when too little is left of it."""
    try:
        cleaned = free_text(text, "legal basis", BASIS_MAX, required=True) or ""
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if len(cleaned) < 3:
        raise ValueError(f"legal basis {cleaned!r} is too short to say why (at least 3 characters)")
    return cleaned


def stored_name(
    request: Request, name: Annotated[str, Path(min_length=1, max_length=NAME_PATH_MAX)]
) -> str:
    """The subject a path segment names. Lookups never apply the rule for new names, so
    subjects of a gallery made before it (a tab, an escape, a bidi override in the name)
    are still shown and erased, percent-encoded once. A name with ``/`` cannot be one
    segment (servers decode ``%2F`` before routing): encode it twice (``a%252Fb``). The
    segment as it arrives wins when a subject holds it. No gallery holds a NUL (neither
    the command line nor the API could ever send one): such a name is simply not found."""
    if "\x00" in name:
        raise NotFoundError(f"no subject named {name!r}")
    if "%" in name:
        decoded = unquote(name)
        gallery = ops(request)
        if decoded != name and not gallery.has_subject(name) and gallery.has_subject(decoded):
            return decoded
    return name


Name = Annotated[str, Depends(stored_name)]


class SubjectCreate(BaseModel):
    # stripped before the checks; the name and basis are then cleaned as the operations
    # layer cleans them, so what it would refuse is a 422 here, naming the character
    model_config = ConfigDict(str_strip_whitespace=True)

    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=4 * NAME_MAX,  # NFC may shorten it; the rule counts after NFC
            description=f"at most {NAME_MAX} characters: letters, digits, spaces and "
            "punctuation; no control or invisible format characters, no / or \\",
        ),
        AfterValidator(new_name),
    ]
    legal_basis: Annotated[
        str,
        Field(
            min_length=3,
            max_length=BASIS_MAX,
            description="why this person's face may be processed",
        ),
        AfterValidator(real_basis),
    ]
    watchlists: list[str] = Field(default=[], max_length=50)


class Subject(BaseModel):
    name: str
    legal_basis: str
    created_at: str
    templates: int
    models: list[str]
    watchlists: list[str] = []


class CreatedSubject(Subject):
    ledger_seq: int
    """The ledger entry that records the creation."""


class Template(BaseModel):
    id: int
    model_id: str
    source_name: str
    source_sha256: str
    quality: float = Field(description="sharpness of the aligned crop (variance of Laplacian)")
    quality_score: float | None = Field(
        None,
        description="the face quality score (0-1) at enrollment, against the floor every "
        "decision is gated by; null for templates enrolled before schema v7",
    )
    legal_basis: str
    created_at: str


class EnrollFailure(BaseModel):
    source: str
    reason: str


class Enrolled(BaseModel):
    subject: str
    enrolled: list[str]
    failures: list[EnrollFailure]
    ledger_seq: int | None


class HistoryEntry(BaseModel):
    seq: int
    at: str
    actor: str
    role: str
    action: str
    detail: str = Field(description="what the entry did to this subject, in words")


class Erased(BaseModel):
    subject: str
    templates: int
    evidence_crops: int
    ledger_seq: int


@router.post("", status_code=201, response_model=CreatedSubject)
def create(request: Request, key: Writer, body: SubjectCreate) -> Any:
    """A new subject with the legal basis for processing their face (templates follow)."""
    made = ops(request).create_subject(acting(key), body.name, body.legal_basis, body.watchlists)
    lists = sorted(set(body.watchlists))
    return CreatedSubject(**made.value.__dict__, watchlists=lists, ledger_seq=made.seq)


@router.get("", response_model=list[Subject])
def list_subjects(request: Request, key: Reader) -> Any:
    gallery = ops(request)
    members: dict[str, list[str]] = {}
    for wl in gallery.list_watchlists():
        for name in wl.subjects:
            members.setdefault(name, []).append(wl.name)
    return [Subject(**s.__dict__, watchlists=members.get(s.name, [])) for s in gallery.subjects()]


@router.get("/{name}", response_model=Subject)
def show(request: Request, key: Reader, name: Name) -> Any:
    gallery = ops(request)
    info, _ = gallery.subject(name)
    return Subject(**info.__dict__, watchlists=gallery.watchlists_of(name))


@router.delete("/{name}", response_model=Erased)
def erase(request: Request, key: Writer, name: Name) -> Any:
    """Erasure: the subject, its templates and crops, and the evidence crops of its events.
    The ledger keeps only hashes and the fact of the deletion."""
    erased = ops(request).remove_subject(acting(key), name)
    return Erased(
        subject=name,
        templates=erased.value.templates,
        evidence_crops=erased.value.evidence_crops,
        ledger_seq=erased.seq,
    )


@router.get("/{name}/templates", response_model=list[Template])
def templates(request: Request, key: Reader, name: Name) -> Any:
    _, found = ops(request).subject(name)
    return [Template(**t.__dict__) for t in found]


@router.get(
    "/{name}/templates/{template_id}/crop",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the enrolled face crop"}},
)
def template_crop(
    request: Request,
    key: Reader,
    name: Name,
    template_id: Annotated[int, Path(ge=1, le=SQL_ID_MAX)],
) -> Response:
    """A template's face crop (a thumbnail of the enrolled photo's face); each viewing is
    recorded (``X-Ledger-Seq``)."""
    seen = ops(request).view_template(acting(key), name, template_id)
    return crop_response(seen.value, seen.seq)


@router.get("/{name}/history", response_model=list[HistoryEntry])
def history(request: Request, key: Reader, name: Name) -> Any:
    """The ledger entries that changed this subject's record, oldest first: creation,
    enrollments, watch-list additions, template deletions (searches are not among them)."""
    return [
        HistoryEntry(
            seq=e.seq, at=e.at, actor=e.actor, role=e.role, action=e.action, detail=_detail(e)
        )
        for e in ops(request).subject_history(name)
    ]


def _detail(entry: Any) -> str:
    result = entry.result if isinstance(entry.result, dict) else {}
    if entry.action == "subject.create":
        lists = ", ".join(result.get("watchlists") or []) or "none"
        return f"created; legal basis: {result.get('legal_basis')}; watch lists: {lists}"
    if entry.action == "enroll":
        made = "created and " if result.get("created") else ""
        return f"{made}{result.get('templates')} template(s) enrolled"
    if entry.action == "watchlist.add":
        return f"added to watch list {result.get('watchlist')}"
    return f"template {result.get('template')} deleted"


@router.post("/{name}/templates", status_code=201, response_model=Enrolled)
def enroll(
    request: Request,
    key: Writer,
    name: Name,
    images: Annotated[list[UploadFile], File(description="photos of this one person")],
    largest: Annotated[
        bool, Form(description="in photos with several faces, enroll the largest")
    ] = False,
) -> Any:
    """Add templates from photos (one face each) to an existing subject, in one
    transaction with its ledger entry. Photos that fail are listed; if none is usable the
    answer is 422."""
    svc = service(request)
    if len(images) > MAX_PHOTOS:
        raise ApiError(413, "PayloadTooLarge", f"at most {MAX_PHOTOS} photos per request")
    blobs = [read_upload(f, svc.config.max_upload, f"image{i}") for i, f in enumerate(images)]
    report, entry = svc.ops.add_templates(acting(key), name, blobs, largest=largest)
    failures = [EnrollFailure(source=s, reason=r) for s, r in report.failures]
    if entry is None or not report.enrolled:
        reasons = "; ".join(f"{f.source}: {f.reason}" for f in failures)
        raise ApiError(422, "InputError", f"nothing enrolled for {name!r}: {reasons}")
    return Enrolled(
        subject=name, enrolled=list(report.enrolled), failures=failures, ledger_seq=entry.seq
    )


@router.delete("/{name}/templates/{template_id}", response_model=Erased)
def delete_template(
    request: Request,
    key: Writer,
    name: Name,
    template_id: Annotated[int, Path(ge=1, le=SQL_ID_MAX)],
) -> Any:
    erased = ops(request).remove_template(acting(key), name, template_id)
    return Erased(
        subject=name, templates=1, evidence_crops=erased.value.evidence_crops, ledger_seq=erased.seq
    )
