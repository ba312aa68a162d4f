"""faceledger's exception tree as HTTP: one JSON error body, never a 5xx for bad input.

::

    {"error": {"type": "InputError", "message": "upload.jpg: not an image file ...",
               "source": "upload.jpg"}}

A busy database (locked past the busy timeout, or a server that does not answer) is a 503
with ``Retry-After``; a ledger entry that cannot be read back is a 409 naming it (``entry``),
and ``GET /v1/audit/verify`` reports it. Messages never show where the database is (a
file's path, a server's URL): it is "the gallery".
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from faceledger.errors import (
    ConfigError,
    ConflictError,
    FaceledgerError,
    InputError,
    ModelError,
    ModelMismatchError,
    NotFoundError,
    StorageBusyError,
    StorageError,
)
from faceledger.ledger.chain import BadEntryError

if TYPE_CHECKING:
    from faceledger.operations import Operations

log = logging.getLogger("faceledger.api")

STATUS: tuple[tuple[type[FaceledgerError], int], ...] = (
    (InputError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (ModelMismatchError, 409),
    (ConfigError, 400),
    (BadEntryError, 409),
    (StorageError, 503),
    (ModelError, 503),
)


class ApiError(Exception):
    """An error the API itself raises: status, a type name and a message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, **extra}}


_SERVER_URL = re.compile(r"postgres(?:ql)?(?:\+\w+)?://[^\s'\"]+", re.IGNORECASE)
_SERVER_AT = re.compile(
    r'(?:connection to )?server (?:at|on) (?:socket )?"[^"]*"(?: \([^)]*\))?(?:, port \d+)?'
)


def database_forms(ops: Operations) -> tuple[str, ...]:
    """Every spelling of where the database is that a message may carry, longest first:
    its shown name (a path, or a URL without password) and its URLs, password or not."""
    where = ops.db.url
    url = where.url
    forms = {ops.db.name, str(url), url.render_as_string(hide_password=False)}
    if where.path is not None:
        forms |= {f"sqlite:///{where.path}", str(where.path), str(where.path.resolve())}
    else:
        plain = url.set(drivername="postgresql")
        forms |= {str(plain), plain.render_as_string(hide_password=False)}
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))


def _without_paths(message: str, forms: tuple[str, ...]) -> str:
    """Clients need not learn where the server keeps its database: its path or URL (any
    PostgreSQL URL at all), and the server's address in a driver's message."""
    for where in forms:
        message = message.replace(where, "the gallery")
    message = _SERVER_URL.sub("the gallery", message)
    return _SERVER_AT.sub("the database server", message)


def retry_after(exc: StorageBusyError) -> str:
    """Whole seconds for the ``Retry-After`` header (at least 1)."""
    return str(max(1, math.ceil(exc.retry_after_s)))


def status_of(exc: FaceledgerError) -> int:
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 500)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "X-API-Key"} if exc.status == 401 else None
        return JSONResponse(body(exc.kind, exc.message), exc.status, headers=headers)

    @app.exception_handler(FaceledgerError)
    async def _ours(request: Request, exc: FaceledgerError) -> JSONResponse:
        ops: Operations = request.app.state.service.ops
        message = _without_paths(str(exc), database_forms(ops))
        extra: dict[str, Any] = {}
        headers: dict[str, str] | None = None
        if isinstance(exc, InputError):
            extra["source"] = exc.source
        elif isinstance(exc, BadEntryError):
            extra["entry"] = exc.seq
            message = message.replace("faceledger audit verify", "GET /v1/audit/verify")
            # one line, no traceback: the entry is named, and /v1/audit/verify reports it
            log.error("%s %s: %s", request.method, request.url.path, message)
        elif isinstance(exc, StorageBusyError):
            headers = {"Retry-After": retry_after(exc)}
            log.warning("%s %s: %s (503, retry)", request.method, request.url.path, message)
        return JSONResponse(
            body(type(exc).__name__, message, **extra), status_of(exc), headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        text = "; ".join(f"{p['where']}: {p['problem']}" for p in problems)
        return JSONResponse(body("ValidationError", text, problems=problems), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(body("HTTPError", str(exc.detail)), exc.status_code)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(body("InternalError", "internal error; see the server log"), 500)
