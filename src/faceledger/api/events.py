"""Events from scans and streams: list, show, see the evidence crop, review."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from faceledger.access import ApiKey, Permission
from faceledger.api.auth import acting, ops, require
from faceledger.api.params import Since
from faceledger.faces.crops import crop_media_type

router = APIRouter(prefix="/v1/events", tags=["events"])
Reader = Annotated[ApiKey, Depends(require(Permission.events_read))]
Reviewer = Annotated[ApiKey, Depends(require(Permission.events_review))]
EventId = Annotated[int, Path(ge=1, le=2**62)]


class Event(BaseModel):
    id: int
    created_at: str
    source: str
    camera: str | None
    track: int
    first_t: float
    last_t: float
    started_at: str | None
    decision: Literal["match", "unknown", "insufficient_quality"]
    subject: str | None
    score: float
    threshold: float
    threshold_fmr: float
    model: str
    status: str
    has_crop: bool
    expires_at: str | None
    review: str | None
    reviews_needed: int


class ReviewIn(BaseModel):
    decision: Literal["confirm", "reject"]
    comment: str | None = Field(None, max_length=2000)


class ReviewOut(BaseModel):
    reviewer: str
    decision: str
    comment: str | None
    at: str


class EventDetail(Event):
    reviews: list[ReviewOut]


class ReviewAnswer(BaseModel):
    event: int
    review: str
    confirmations: int
    needed: int
    reviews: list[ReviewOut]
    ledger_seq: int


@router.get("", response_model=list[Event])
def list_events(
    request: Request,
    key: Reader,
    review: Literal["pending", "confirmed", "rejected"] | None = None,
    subject: Annotated[str | None, Query(max_length=200)] = None,
    source: Annotated[str | None, Query(max_length=2000)] = None,
    camera: Annotated[str | None, Query(max_length=200)] = None,
    since: Since = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Newest first. ``review=pending`` lists what waits for a reviewer."""
    found = ops(request).list_events(
        source=source, subject=subject, since=since, limit=limit, review=review, camera=camera
    )
    return [Event(**e.as_json()) for e in found]


@router.get("/{event_id}", response_model=EventDetail)
def show(request: Request, key: Reader, event_id: EventId) -> Any:
    record, reviews = ops(request).event(event_id)
    return EventDetail(**record.as_json(), reviews=[ReviewOut(**r.as_json()) for r in reviews])


@router.get(
    "/{event_id}/crop",
    response_class=Response,
    responses={
        200: {
            "content": {"image/jpeg": {}, "image/png": {}},
            "description": "the evidence crop: JPEG (PNG for events stored by older versions)",
        }
    },
)
def crop(request: Request, key: Reader, event_id: EventId) -> Response:
    """The event's face crop (evidence), when one is kept. Each viewing is recorded (the
    ``X-Ledger-Seq`` header names its entry)."""
    seen = ops(request).view_evidence(acting(key), event_id)
    media = crop_media_type(seen.value) or "application/octet-stream"
    return Response(seen.value, media_type=media, headers={"X-Ledger-Seq": str(seen.seq)})


@router.post("/{event_id}/review", response_model=ReviewAnswer)
def review(request: Request, key: Reviewer, event_id: EventId, body: ReviewIn) -> Any:
    """Confirm or reject. Events on a two-person watch list need two different reviewers
    to confirm; one rejection decides. The reviewer is the key's holder."""
    state = ops(request).review(acting(key), event_id, body.decision, body.comment)
    return ReviewAnswer(**state.value.as_json(), ledger_seq=state.seq)
