"""API keys, checked against the role's permissions; the acting context (who, role,
purpose, case) each operation is called with.

A key comes in the ``X-API-Key`` header, or, from the operator console, through a session
cookie (:mod:`.sessions`): the server holds the key behind it, and a state-changing
request with the cookie must carry the session's CSRF token."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from faceledger.access import ApiKey, Permission, allowed
from faceledger.api.errors import ApiError
from faceledger.api.service import Service
from faceledger.api.sessions import COOKIE, CSRF_HEADER, UNSAFE_METHODS
from faceledger.operations import Acting, Operations

HEADER = "X-API-Key"
_header = APIKeyHeader(
    name=HEADER,
    auto_error=False,
    description="a key made with: faceledger keys create --role ROLE --name WHO",
)


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def ops(request: Request) -> Operations:
    return service(request).ops


AUTHENTICATED = "faceledger_key"
"""Where the body-limits middleware leaves the key it checked (``request.state``)."""


def authenticate(operations: Operations, token: str | None) -> ApiKey:
    """The active key behind ``token`` (the ``X-API-Key`` header), or a 401 ApiError."""
    if not token:
        raise ApiError(401, "Unauthorized", f"send an API key in the {HEADER} header")
    key = operations.authenticate(token)
    if key is None:
        raise ApiError(401, "Unauthorized", "unknown or revoked API key")
    return key


def authenticate_request(svc: Service, request: Request) -> ApiKey:
    """The active key of a request: its ``X-API-Key`` header, else its session cookie
    (whose CSRF token a POST, PUT, PATCH or DELETE must carry). 401 or 403 ApiError."""
    token = request.headers.get(HEADER)
    if token:
        return authenticate(svc.ops, token)
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return authenticate(svc.ops, None)
    session = svc.sessions.get(cookie)
    if session is None:
        raise ApiError(401, "Unauthorized", "the console session ended; sign in again")
    if request.method in UNSAFE_METHODS and not session.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise ApiError(
            403, "Forbidden", f"the {CSRF_HEADER} header is missing or wrong for this session"
        )
    key = svc.ops.authenticate(session.token)
    if key is None:
        svc.sessions.close(session.id)
        raise ApiError(401, "Unauthorized", "this session's API key was revoked; sign in again")
    return key


def require(permission: Permission) -> Callable[..., ApiKey]:
    """A dependency: the caller's key, if it may use ``permission`` (401/403 otherwise)."""

    def check(request: Request, token: str | None = Security(_header)) -> ApiKey:
        # ``token`` is declared for the OpenAPI page; the header is read again below
        key = getattr(request.state, AUTHENTICATED, None) or authenticate_request(
            service(request), request
        )
        if not allowed(key.role, permission):
            raise ApiError(
                403,
                "Forbidden",
                f"role {key.role.value} may not use {permission.value} (key {key.id})",
            )
        return key

    return check


def acting(key: ApiKey, purpose: str | None = None, case_ref: str | None = None) -> Acting:
    """The key's holder acting (its name and role), for ``purpose`` in case ``case_ref``."""
    return Acting(key.name, key.role.value, purpose, case_ref)
