"""Cameras as records: the admin adds, pauses, resumes and removes them; the admin and
the operator read them (the operator watches whether they run).

Every change is one ledger entry, written in the same transaction (the answer carries its
``ledger_seq``). A camera's address may carry credentials: no answer shows them (addresses
are masked, ``rtsp://***@host/x``, in records and in error messages alike), and an address
whose credentials could not be masked reliably is refused without being quoted.

The reviewer, the enroller and the auditor may not read cameras: what they need of them
is elsewhere (an event names its camera; ``/v1/status`` lists the cameras events came from,
for every role; the auditor sees every camera change, masked, in the ledger).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field, PrivateAttr, model_validator

from faceledger.access import ApiKey, Permission, Role
from faceledger.api.auth import acting, ops, require
from faceledger.api.errors import ApiError
from faceledger.errors import ConfigError
from faceledger.gallery.cameras import TEXT_MAX, CameraSettings

router = APIRouter(prefix="/v1/cameras", tags=["cameras"])

READERS = frozenset({Role.admin, Role.operator})
"""Who may read cameras (``cameras.read``): the admin, and the operator."""
WRITERS = frozenset({Role.admin})
"""Who may change them (``cameras.write``): the admin."""
URL_MAX = 2000
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def _roles(what: str, roles: frozenset[Role]) -> Callable[..., ApiKey]:
    """A dependency: the caller's key (checked as every route checks it), if its role is
    one of ``roles``; a 403 naming the role otherwise."""

    def check(key: Annotated[ApiKey, Depends(require(Permission.health))]) -> ApiKey:
        if key.role not in roles:
            raise ApiError(
                403, "Forbidden", f"role {key.role.value} may not use {what} (key {key.id})"
            )
        return key

    return check


Reader = Annotated[ApiKey, Depends(_roles("cameras.read", READERS))]
Writer = Annotated[ApiKey, Depends(_roles("cameras.write", WRITERS))]
Name = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=NAME_PATTERN,
        description="the camera's name: 1-64 letters, digits, '.', '_' or '-'",
    ),
]


class CameraCreate(BaseModel):
    """A new camera. Checked as every front end checks it (:class:`CameraSettings`): what
    it refuses is a 422 saying why, with any address in it masked."""

    name: str = Field(
        min_length=1,
        max_length=64,
        description="1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        examples=["door-1"],
    )
    url: str = Field(
        min_length=1,
        max_length=URL_MAX,
        description="rtsp://, rtsps://, http(s)://, udp://, tcp://, rtmp:// or /dev/videoN; "
        "credentials in it are kept to connect and never shown",
        examples=["rtsp://user:password@10.0.0.5/stream"],
    )
    purpose: str = Field(
        min_length=1, max_length=TEXT_MAX, description="why this camera runs (required)"
    )
    legal_basis: str = Field(
        min_length=1,
        max_length=TEXT_MAX,
        description="the legal basis for recognising faces at this camera (required)",
    )
    watchlists: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1,
        max_length=50,
        description="the watch lists it matches against (each must exist): anyone on none "
        "of them is unknown at this camera",
    )
    detect_fps: float = Field(5.0, ge=0.1, le=60, allow_inf_nan=False)
    min_face: int | None = Field(None, ge=8, le=2000, description="pixels; null: the detector's")
    detect_url: str | None = Field(
        None, min_length=1, max_length=URL_MAX, description="a sub-stream to detect on"
    )
    transport: Literal["tcp", "udp", "auto"] = "tcp"
    timeout: float = Field(10.0, ge=0.5, le=300, allow_inf_nan=False, description="seconds")

    _settings: CameraSettings | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _checked(self) -> CameraCreate:
        try:
            self._settings = CameraSettings(
                name=self.name,
                url=self.url,
                purpose=self.purpose,
                legal_basis=self.legal_basis,
                watchlists=tuple(self.watchlists),
                detect_fps=self.detect_fps,
                min_face=self.min_face,
                detect_url=self.detect_url,
                transport=self.transport,
                timeout=self.timeout,
            )
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def settings(self) -> CameraSettings:
        if self._settings is None:  # the validator sets it: not reached
            raise ConfigError("camera settings were not checked")
        return self._settings


class CameraRecord(BaseModel):
    """A camera as it is shown: its addresses masked."""

    name: str
    url: str = Field(description="masked: rtsp://***@host/x")
    detect_url: str | None = Field(description="masked")
    transport: str
    purpose: str
    legal_basis: str
    watchlists: list[str]
    detect_fps: float
    min_face: int | None
    timeout: float
    paused: bool
    created_at: str
    updated_at: str
    node: str | None = Field(description="the node that last reported on it")
    health: dict[str, Any] | None = Field(description="what that node last reported")
    health_at: str | None


class CameraChanged(CameraRecord):
    ledger_seq: int
    """The ledger entry that records the change."""


@router.get("", response_model=list[CameraRecord])
def list_cameras(request: Request, key: Reader) -> Any:
    """Every camera, by name: settings, paused or not, and its last health report."""
    return [CameraRecord(**c.as_json()) for c in ops(request).list_cameras()]


@router.get("/{name}", response_model=CameraRecord)
def show(request: Request, key: Reader, name: Name) -> Any:
    return CameraRecord(**ops(request).camera(name).as_json())


@router.post("", status_code=201, response_model=CameraChanged)
def add(request: Request, key: Writer, body: CameraCreate) -> Any:
    """A new camera, with its purpose, legal basis and watch lists (each must exist: 404
    otherwise); a name taken is a 409. A node picks it up within seconds."""
    done = ops(request).add_camera(acting(key), body.settings)
    return CameraChanged(**done.value.as_json(), ledger_seq=done.seq)


@router.post("/{name}/pause", response_model=CameraChanged)
def pause(request: Request, key: Writer, name: Name) -> Any:
    """Pause a camera: its node stops it within seconds."""
    done = ops(request).set_camera_paused(acting(key), name, True)
    return CameraChanged(**done.value.as_json(), ledger_seq=done.seq)


@router.post("/{name}/resume", response_model=CameraChanged)
def resume(request: Request, key: Writer, name: Name) -> Any:
    done = ops(request).set_camera_paused(acting(key), name, False)
    return CameraChanged(**done.value.as_json(), ledger_seq=done.seq)


@router.delete("/{name}", response_model=CameraChanged)
def remove(request: Request, key: Writer, name: Name) -> Any:
    """Delete a camera's record (its events are kept, naming it); the answer is the record
    as it was."""
    done = ops(request).remove_camera(acting(key), name)
    return CameraChanged(**done.value.as_json(), ledger_seq=done.seq)
