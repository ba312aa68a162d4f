"""Administration: API keys, watch lists, retention runs; health and metrics for every
role; and ``/livez``, the one route without a key (a liveness probe that reveals nothing)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from faceledger import __version__
from faceledger.access import ApiKey, Permission, Role
from faceledger.api.auth import acting, ops, require, service

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


class Live(BaseModel):
    status: Literal["ok"] = "ok"


class Health(BaseModel):
    status: str
    schema_version: int
    model: str
    profile: str
    threads: int = Field(description="inference threads per request (0: all cores)")


@router.post("/v1/keys", status_code=201, response_model=NewKey)
def create_key(request: Request, key: Admin, body: KeyCreate) -> Any:
    made = ops(request).create_key(acting(key), body.name, body.role)
    token, new = made.value
    return NewKey(token=token, key=Key(**new.as_json()))


@router.get("/v1/keys", response_model=list[Key])
def list_keys(request: Request, key: Admin) -> Any:
    return [Key(**k.as_json()) for k in ops(request).list_keys()]


@router.delete("/v1/keys/{key_id}", response_model=Key)
def revoke_key(
    request: Request, key: Admin, key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{8}$")]
) -> Any:
    return Key(**ops(request).revoke_key(acting(key), key_id).value.as_json())


@router.post("/v1/watchlists", status_code=201, response_model=WatchListOut)
def create_watchlist(request: Request, key: ListWriter, body: WatchListCreate) -> Any:
    """A watch list; ``review`` holds its matches as pending until a reviewer confirms,
    ``two_person`` needs two different reviewers."""
    made = ops(request).create_watchlist(acting(key), body.name, body.review, body.two_person)
    return WatchListOut(**made.value.as_json())


@router.get("/v1/watchlists", response_model=list[WatchListOut])
def list_watchlists(request: Request, key: ListReader) -> Any:
    return [WatchListOut(**w.as_json()) for w in ops(request).list_watchlists()]


@router.post("/v1/retention/run", response_model=RetentionOut)
def retention(request: Request, key: Retention) -> Any:
    """Delete what outlived the configured lifetimes (events, evidence, strangers' crops);
    the run is recorded in the ledger, which is never deleted."""
    return RetentionOut(**ops(request).run_retention(acting(key)).as_json())


@router.get("/livez", response_model=Live, tags=["health"])
def livez() -> Live:
    """Liveness for container health checks and load balancers: no key needed, and the
    answer is always ``{"status": "ok"}`` while the process serves requests; it touches
    no database and says nothing about the gallery, models or keys (``/healthz`` does,
    with a key)."""
    return Live()


@router.get("/healthz", response_model=Health, tags=["health"])
def healthz(request: Request, key: Anyone) -> Any:
    gallery = ops(request)
    return Health(
        status="ok",
        schema_version=gallery.schema_version,
        model=gallery.model_id,
        profile=gallery.config.profile,
        threads=gallery.config.threads,
    )


class Gallery(BaseModel):
    subjects: int
    templates: int
    watchlists: int


class Queues(BaseModel):
    pending_reviews: int
    outbox: int


class RetentionSettings(BaseModel):
    keep_events_days: float | None
    keep_evidence_days: float | None
    keep_unknown_days: float | None = Field(description="null: strangers' crops are never kept")


class CameraSeen(BaseModel):
    camera: str
    events: int
    last_event_at: str


class Status(BaseModel):
    version: str
    profile: str
    model: str
    detector: str
    models_loaded: bool
    schema_version: int
    database: str
    strictness: str
    quality_floor: float
    gallery: Gallery
    queues: Queues
    retention: RetentionSettings
    cameras: list[CameraSeen] = Field(description="the cameras events came from")


@router.get("/v1/status", response_model=Status, tags=["health"])
def status(request: Request, key: Anyone) -> Any:
    """Models, gallery size, review and delivery queues, retention settings, and the
    cameras events came from (counts and names of cameras only: no one's name)."""
    return Status(version=__version__, **ops(request).status())


@router.get(
    "/metrics",
    response_class=Response,
    tags=["health"],
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request, key: Anyone) -> Response:
    svc = service(request)
    queues = svc.ops.queue_counts()
    svc.metrics.pending_reviews.set(queues["pending_reviews"])
    svc.metrics.outbox.set(queues["outbox"])
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4")
