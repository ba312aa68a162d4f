"""Events from scans and streams: list, follow live, show, see the evidence crop beside the
subject's enrolled templates, review."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from faceledger.access import ApiKey, Permission
from faceledger.api.auth import acting, authenticate_request, ops, require, service
from faceledger.api.errors import ApiError
from faceledger.api.params import SQL_ID_MAX, Since, crop_response

router = APIRouter(prefix="/v1/events", tags=["events"])
Reader = Annotated[ApiKey, Depends(require(Permission.events_read))]
Reviewer = Annotated[ApiKey, Depends(require(Permission.events_review))]
EventId = Annotated[int, Path(ge=1, le=2**62)]
TemplateId = Annotated[int, Path(ge=1, le=SQL_ID_MAX)]
POLL_S = 0.2
"""How often a live feed looks for new and reviewed events (the delay to the screen)."""
RECHECK_S = 5.0
"""How often a live feed checks that its key (or session) is still good."""
STREAM_S = 300.0
"""A live feed ends after this long; the browser reconnects where it left off."""
PING_S = 15.0
SHOWN_TEMPLATES = 5


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


class Recording(BaseModel):
    """The ledger entry written with the event: the scan or stream that decided it."""

    ledger_seq: int
    actor: str
    role: str
    action: str
    purpose: str | None
    case_ref: str | None


class EventDetail(Event):
    reviews: list[ReviewOut]
    recorded: Recording | None = Field(
        description="who ran the scan or stream that decided it, for which purpose and case"
    )


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


class EventTemplate(BaseModel):
    id: int
    source_name: str
    quality_score: float | None = Field(description="face quality score (0-1) at enrollment")
    created_at: str


def _cursor(text: str | None) -> tuple[int, int] | None:
    """A ``Last-Event-ID`` as sent back by a browser: "EVENT.REVIEW" (both ids)."""
    if not text:
        return None
    parts = text.strip().split(".")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) < 19 for p in parts):
        raise ApiError(400, "InputError", f"Last-Event-ID {text[:40]!r} is not EVENT.REVIEW")
    return int(parts[0]), int(parts[1])


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
async def stream(
    request: Request,
    key: Reader,
    last_event_id: Annotated[str | None, Header(max_length=60)] = None,
    seconds: Annotated[
        float, Query(gt=0, le=STREAM_S, description="end the feed after this long")
    ] = STREAM_S,
) -> StreamingResponse:
    """Server-sent events: first a ``ready`` message (the feed's starting point), then one
    ``event`` message (the event's JSON, as listed) for every event made, and every event
    reviewed, from now on (or after ``Last-Event-ID``, which a
    browser sends when it reconnects). The feed ends after ``seconds`` (5 minutes) or when
    the key or session stops being valid; browsers reconnect on their own."""
    svc = service(request)
    cursor = _cursor(last_event_id)
    if cursor is None:
        _, *start = await anyio.to_thread.run_sync(svc.ops.changed_events, -1, -1)
        cursor = (start[0], start[1])

    async def feed() -> AsyncIterator[str]:
        events_after, reviews_after = cursor
        started = checked = pinged = time.monotonic()
        # where the feed starts: a page loads its list after this, so that nothing made or
        # reviewed in between is missed
        yield f"retry: 1000\nevent: ready\ndata: {events_after}.{reviews_after}\n\n"
        while time.monotonic() - started < seconds:
            if await request.is_disconnected():
                return
            now = time.monotonic()
            if now - checked > RECHECK_S:
                checked = now
                try:
                    await anyio.to_thread.run_sync(authenticate_request, svc, request)
                except ApiError:
                    return
            found, events_after, reviews_after = await anyio.to_thread.run_sync(
                svc.ops.changed_events, events_after, reviews_after
            )
            for record in found:
                data = json.dumps(Event(**record.as_json()).model_dump(), ensure_ascii=False)
                yield f"id: {events_after}.{reviews_after}\nevent: event\ndata: {data}\n\n"
            if not found and now - pinged > PING_S:
                pinged = now
                yield ": ping\n\n"
            await anyio.sleep(POLL_S)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(feed(), media_type="text/event-stream", headers=headers)


@router.get("/{event_id}", response_model=EventDetail)
def show(request: Request, key: Reader, event_id: EventId) -> Any:
    gallery = ops(request)
    record, reviews = gallery.event(event_id)
    entry = gallery.event_record(event_id)
    recorded = None
    if entry is not None:
        recorded = Recording(
            ledger_seq=entry.seq,
            actor=entry.actor,
            role=entry.role,
            action=entry.action,
            purpose=entry.purpose,
            case_ref=entry.case_ref,
        )
    return EventDetail(
        **record.as_json(), reviews=[ReviewOut(**r.as_json()) for r in reviews], recorded=recorded
    )


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
    return crop_response(seen.value, seen.seq)


@router.get("/{event_id}/templates", response_model=list[EventTemplate])
def templates(request: Request, key: Reader, event_id: EventId) -> Any:
    """The enrolled templates (at most 5) of the subject the event named, to compare with
    its evidence; empty when it named no one or the subject was erased."""
    found = ops(request).event_templates(event_id)[:SHOWN_TEMPLATES]
    return [EventTemplate(**{k: getattr(t, k) for k in EventTemplate.model_fields}) for t in found]


@router.get(
    "/{event_id}/templates/{template_id}/crop",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the enrolled face crop"}},
)
def template_crop(
    request: Request, key: Reader, event_id: EventId, template_id: TemplateId
) -> Response:
    """One of those templates' face crop; each viewing is recorded (``X-Ledger-Seq``)."""
    seen = ops(request).view_event_template(acting(key), event_id, template_id)
    return crop_response(seen.value, seen.seq)


@router.post("/{event_id}/review", response_model=ReviewAnswer)
def review(request: Request, key: Reviewer, event_id: EventId, body: ReviewIn) -> Any:
    """Confirm or reject. Events on a two-person watch list need two different reviewers
    to confirm; one rejection decides. The reviewer is the key's holder."""
    state = ops(request).review(acting(key), event_id, body.decision, body.comment)
    return ReviewAnswer(**state.value.as_json(), ledger_seq=state.seq)
