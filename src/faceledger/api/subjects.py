"""Subjects (with their legal basis and watch lists) and their templates; erasure."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from faceledger.access import ApiKey, Permission
from faceledger.api.auth import actor, require, service
from faceledger.api.errors import ApiError
from faceledger.api.params import SQL_ID_MAX
from faceledger.api.uploads import read_upload
from faceledger.engine import EnrollReport
from faceledger.gallery.store import Erasure
from faceledger.ledger.audit import erasure_summary

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])
Reader = Annotated[ApiKey, Depends(require(Permission.subjects_read))]
Writer = Annotated[ApiKey, Depends(require(Permission.subjects_write))]
NAME_PATTERN = r"^[^/\x00-\x1f\x7f]+$"
Name = Annotated[str, Path(min_length=1, max_length=200, pattern=NAME_PATTERN)]
MAX_PHOTOS = 50


class SubjectCreate(BaseModel):
    # stripped before the length checks: a blank name or basis is a 422 (the gallery would
    # refuse it with a StorageError, a 503)
    model_config = ConfigDict(str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    legal_basis: str = Field(
        min_length=3, max_length=2000, description="why this person's face may be processed"
    )
    watchlists: list[str] = Field(default=[], max_length=50)


class Subject(BaseModel):
    name: str
    legal_basis: str
    created_at: str
    templates: int
    models: list[str]
    watchlists: list[str] = []


class Template(BaseModel):
    id: int
    model_id: str
    source_name: str
    source_sha256: str
    quality: float
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


class Erased(BaseModel):
    subject: str
    templates: int
    evidence_crops: int
    ledger_seq: int


@router.post("", status_code=201, response_model=Subject)
def create(request: Request, key: Writer, body: SubjectCreate) -> Any:
    """A new subject with the legal basis for processing their face (templates follow)."""
    svc = service(request)
    who = actor(key)
    lists = sorted(set(body.watchlists))

    def within(conn: Connection, _created: bool) -> None:
        svc.watchlists.add(conn, body.name.strip(), lists)
        result = {
            "subject": body.name.strip(),
            "legal_basis": body.legal_basis.strip(),
            "watchlists": lists,
        }
        svc.ledger.append_in(conn, who.name, who.role, "subject.create", result=result)

    info = svc.engine.gallery.create_subject(body.name, body.legal_basis, within)
    return Subject(**info.__dict__, watchlists=lists)


@router.get("", response_model=list[Subject])
def list_subjects(request: Request, key: Reader) -> Any:
    svc = service(request)
    members: dict[str, list[str]] = {}
    for wl in svc.watchlists.all():
        for name in wl.subjects:
            members.setdefault(name, []).append(wl.name)
    return [
        Subject(**s.__dict__, watchlists=members.get(s.name, []))
        for s in svc.engine.gallery.subjects()
    ]


@router.get("/{name}", response_model=Subject)
def show(request: Request, key: Reader, name: Name) -> Any:
    svc = service(request)
    info, _ = svc.engine.gallery.subject(name)
    return Subject(**info.__dict__, watchlists=svc.watchlists.of(name))


@router.delete("/{name}", response_model=Erased)
def erase(request: Request, key: Writer, name: Name) -> Any:
    """Erasure: the subject, its templates and crops, and the evidence crops of its events.
    The ledger keeps only hashes and the fact of the deletion."""
    svc = service(request)
    who = actor(key)
    done: list[tuple[Erasure, int]] = []

    def within(conn: Connection, erasure: Erasure) -> None:
        entry = svc.ledger.append_in(
            conn,
            who.name,
            who.role,
            "subject.delete",
            inputs=erasure.source_sha256,
            result=erasure_summary(erasure),
        )
        done.append((erasure, entry.seq))

    svc.engine.gallery.remove(name, within)
    erasure, seq = done[0]
    return Erased(
        subject=name,
        templates=erasure.templates,
        evidence_crops=erasure.evidence_crops,
        ledger_seq=seq,
    )


@router.get("/{name}/templates", response_model=list[Template])
def templates(request: Request, key: Reader, name: Name) -> Any:
    _, found = service(request).engine.gallery.subject(name)
    return [Template(**t.__dict__) for t in found]


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
    if not svc.engine.gallery.has_subject(name):
        raise ApiError(
            404, "NotFoundError", f"no subject named {name!r}: create it with its legal basis first"
        )
    blobs = [read_upload(f, svc.config.max_upload, f"image{i}") for i, f in enumerate(images)]
    who = actor(key)
    seq: list[int] = []

    def record(conn: Connection, report: EnrollReport) -> None:
        result = {"subject": name, "created": report.created, "templates": len(report.enrolled)}
        entry = svc.ledger.append_in(
            conn,
            who.name,
            who.role,
            "enroll",
            inputs=report.digests,
            result=result,
            model=svc.engine.model_id,
        )
        seq.append(entry.seq)

    with svc.inference() as engine:
        report = engine.enroll(name, blobs, None, largest=largest, record=record)
    failures = [EnrollFailure(source=s, reason=r) for s, r in report.failures]
    if not report.enrolled:
        reasons = "; ".join(f"{f.source}: {f.reason}" for f in failures)
        raise ApiError(422, "InputError", f"nothing enrolled for {name!r}: {reasons}")
    return Enrolled(
        subject=name, enrolled=list(report.enrolled), failures=failures, ledger_seq=seq[0]
    )


@router.delete("/{name}/templates/{template_id}", response_model=Erased)
def delete_template(
    request: Request,
    key: Writer,
    name: Name,
    template_id: Annotated[int, Path(ge=1, le=SQL_ID_MAX)],
) -> Any:
    svc = service(request)
    who = actor(key)
    seq: list[int] = []

    def within(conn: Connection, erasure: Erasure) -> None:
        result = {"template": template_id, **erasure_summary(erasure)}
        entry = svc.ledger.append_in(
            conn,
            who.name,
            who.role,
            "template.delete",
            inputs=erasure.source_sha256,
            result=result,
        )
        seq.append(entry.seq)

    erasure = svc.engine.gallery.remove_template(name, template_id, within)
    return Erased(
        subject=name, templates=1, evidence_crops=erasure.evidence_crops, ledger_seq=seq[0]
    )
