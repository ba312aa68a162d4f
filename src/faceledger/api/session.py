"""Signing the operator console in and out: an API key for a session cookie.

``POST /v1/session`` takes the key as JSON (a cross-site page cannot send JSON without a
CORS preflight, which faceledger refuses, so no other site can sign a browser in); the
answer sets an HttpOnly, SameSite=Strict cookie and gives the page its CSRF token. What
the session may do is exactly what its key's role may (:mod:`faceledger.access`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from faceledger.access import PERMISSIONS, ApiKey, Permission
from faceledger.api.auth import HEADER, require, service
from faceledger.api.errors import ApiError
from faceledger.api.sessions import COOKIE, LIFETIME, Session

router = APIRouter(prefix="/v1/session", tags=["session"])
Anyone = Annotated[ApiKey, Depends(require(Permission.health))]


class SignIn(BaseModel):
    api_key: str = Field(min_length=1, max_length=200, description="a key (fl_...)")


class SessionOut(BaseModel):
    key_id: str
    name: str
    role: str
    permissions: list[str] = Field(description="what this key's role may do")
    csrf: str | None = Field(
        description="send it as X-CSRF-Token with every POST and DELETE (null: the request "
        "came with X-API-Key, not a session)"
    )
    expires_at: str | None


def _out(key: ApiKey, session: Session | None) -> SessionOut:
    return SessionOut(
        key_id=key.id,
        name=key.name,
        role=key.role.value,
        permissions=sorted(p.value for p in PERMISSIONS[key.role]),
        csrf=None if session is None else session.csrf,
        expires_at=None if session is None else session.expires_iso(),
    )


@router.post("", response_model=SessionOut)
def sign_in(request: Request, response: Response, body: SignIn) -> Any:
    """Open a console session with an API key: sets the session cookie (HttpOnly,
    SameSite=Strict; Secure over HTTPS). 401 for an unknown or revoked key."""
    svc = service(request)
    token = body.api_key.strip()
    key = svc.ops.authenticate(token) if token else None
    if key is None:
        raise ApiError(401, "Unauthorized", "unknown or revoked API key")
    session = svc.sessions.open(token)
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=int(LIFETIME.total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.headers["Cache-Control"] = "no-store"
    return _out(key, session)


@router.get("", response_model=SessionOut)
def current(request: Request, response: Response, key: Anyone) -> Any:
    """The signed-in key (name, role, permissions) and the session's CSRF token (a request
    with ``X-API-Key`` instead: that key, with no session)."""
    session = None
    if not request.headers.get(HEADER):
        session = service(request).sessions.get(request.cookies.get(COOKIE))
    response.headers["Cache-Control"] = "no-store"
    return _out(key, session)


@router.delete("", status_code=204, response_class=Response)
def sign_out(request: Request, key: Anyone) -> Response:
    """End the session (its CSRF token is required) and clear the cookie."""
    cookie = request.cookies.get(COOKIE)
    if cookie:
        service(request).sessions.close(cookie)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
