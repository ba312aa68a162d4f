"""Administration: API keys, watch lists, retention runs; health and metrics for all."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from faceledger.access import ApiKey, Permission, Role
from faceledger.api.auth import actor, require, service
from faceledger.db.migrate import SCHEMA_VERSION
from faceledger.db.schema import events, outbox
from faceledger.gallery.watchlists import WatchList
from faceledger.ledger.audit import key_summary
from faceledger.ledger.retention import Policy, run_retention

router = APIRouter(tags=["admin"])
Admin = Annotated[ApiKey, Depends(require(Permission.keys))]
ListReader = Annotated[ApiKey, Depends(require(Permission.watchlists_read))]
ListWriter = Annotated[ApiKey, Depends(require(Permission.watchlists_write))]
Retention = Annotated[ApiKey, Depends(require(Permission.retention))]
Anyone = Annotated[ApiKey, Depends(require(Permission.health))]


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    role: Role


class Key(BaseModel):
    id: str
    name: str
    role: Role
    created_at: str
    created_by: str
    revoked_at: str | None


class NewKey(BaseModel):
    token: str = Field(description="shown only now: it is stored hashed")
    key: Key


class WatchListCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    review: bool = False
    two_person: bool = False


class WatchListOut(BaseModel):
    name: str
    review: bool
    two_person: bool
    reviews_needed: int
    created_at: str
    subjects: list[str]


class RetentionOut(BaseModel):
    events_deleted: int
    evidence_erased: int
    unknown_erased: int
    events_before: str
    evidence_before: str
    ledger_seq: int


class Health(BaseModel):
    status: str
    schema_version: int
    model: str
    profile: str
    threads: int = Field(description="inference threads per request (0: all cores)")


def _key_hook(svc: Any, who: Any, action: str) -> Any:
    def within(conn: Connection, key: Any) -> None:
        svc.ledger.append_in(conn, who.name, who.role, action, result=key_summary(key))

    return within


@router.post("/v1/keys", status_code=201, response_model=NewKey)
def create_key(request: Request, key: Admin, body: KeyCreate) -> Any:
    svc = service(request)
    who = actor(key)
    token, made = svc.keys.create(body.name, body.role, who.name, _key_hook(svc, who, "key.create"))
    return NewKey(token=token, key=Key(**made.as_json()))


@router.get("/v1/keys", response_model=list[Key])
def list_keys(request: Request, key: Admin) -> Any:
    return [Key(**k.as_json()) for k in service(request).keys.all()]


@router.delete("/v1/keys/{key_id}", response_model=Key)
def revoke_key(
    request: Request, key: Admin, key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{8}$")]
) -> Any:
    svc = service(request)
    who = actor(key)
    return Key(**svc.keys.revoke(key_id, _key_hook(svc, who, "key.revoke")).as_json())


@router.post("/v1/watchlists", status_code=201, response_model=WatchListOut)
def create_watchlist(request: Request, key: ListWriter, body: WatchListCreate) -> Any:
    """A watch list; ``review`` holds its matches as pending until a reviewer confirms,
    ``two_person`` needs two different reviewers."""
    svc = service(request)
    who = actor(key)

    def within(conn: Connection, made: WatchList) -> None:
        svc.ledger.append_in(conn, who.name, who.role, "watchlist.create", result=made.as_json())

    made = svc.watchlists.create(body.name, body.review, body.two_person, within)
    return WatchListOut(**made.as_json())


@router.get("/v1/watchlists", response_model=list[WatchListOut])
def list_watchlists(request: Request, key: ListReader) -> Any:
    return [WatchListOut(**w.as_json()) for w in service(request).watchlists.all()]


@router.post("/v1/retention/run", response_model=RetentionOut)
def retention(request: Request, key: Retention) -> Any:
    """Delete what outlived the configured lifetimes (events, evidence, strangers' crops);
    the run is recorded in the ledger, which is never deleted."""
    svc = service(request)
    who = actor(key)
    policy = Policy(svc.config.keep_events, svc.config.keep_evidence)
    report = run_retention(svc.engine.gallery, svc.ledger, policy, who.name, who.role)
    return RetentionOut(**report.as_json())


@router.get("/healthz", response_model=Health, tags=["health"])
def healthz(request: Request, key: Anyone) -> Any:
    svc = service(request)
    return Health(
        status="ok",
        schema_version=SCHEMA_VERSION,
        model=svc.engine.model_id,
        profile=svc.config.profile,
        threads=svc.config.threads,
    )


@router.get(
    "/metrics",
    response_class=Response,
    tags=["health"],
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request, key: Anyone) -> Response:
    svc = service(request)
    with svc.engine.gallery.engine.connect() as conn:
        pending = conn.execute(
            sa.select(sa.func.count()).where(events.c.review == "pending")
        ).scalar()
        queued = conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar()
    svc.metrics.pending_reviews.set(int(pending or 0))
    svc.metrics.outbox.set(int(queued or 0))
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4")
