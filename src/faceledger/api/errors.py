"""faceledger's exception tree as HTTP: one JSON error body, never a 5xx for bad input.

::

    {"error": {"type": "InputError", "message": "upload.jpg: not an image file ...",
               "source": "upload.jpg"}}
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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
    StorageError,
)

log = logging.getLogger("faceledger.api")

STATUS: tuple[tuple[type[FaceledgerError], int], ...] = (
    (InputError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (ModelMismatchError, 409),
    (ConfigError, 400),
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


def _without_paths(message: str, db: Path) -> str:
    """Clients need not learn where the server keeps its database."""
    for where in (f"sqlite:///{db}", str(db)):
        message = message.replace(where, "the gallery")
    return message


def status_of(exc: FaceledgerError) -> int:
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 500)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "X-API-Key"} if exc.status == 401 else None
        return JSONResponse(body(exc.kind, exc.message), exc.status, headers=headers)

    @app.exception_handler(FaceledgerError)
    async def _ours(request: Request, exc: FaceledgerError) -> JSONResponse:
        extra = {"source": exc.source} if isinstance(exc, InputError) else {}
        message = _without_paths(str(exc), request.app.state.service.config.db)
        return JSONResponse(body(type(exc).__name__, message, **extra), status_of(exc))

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
