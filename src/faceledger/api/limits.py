"""Request bodies: not a byte read before the key is checked, none taken past the cap.

A pure ASGI middleware (it buffers nothing). For a request that carries a body
(``Content-Length`` above 0, or ``Transfer-Encoding``, i.e. chunked) it:

1. checks the ``X-API-Key`` header (:func:`faceledger.api.auth.authenticate`, through the
   service's operations) before the application may read any of the body; a missing,
   unknown or revoked key is answered 401 with the body unread;
2. answers 413 at once when the declared ``Content-Length`` is over the cap;
3. counts the body as the application receives it and, as soon as the count passes the
   cap (a chunked body declares no length), answers 413 and tells the application the
   client went away, so that it stops reading.

An answer given before the body was read through carries ``Connection: close``: the server
then drops the connection instead of reading (and discarding) what the client still sends.
Answers are rendered by the application's own exception handlers (:mod:`.errors`), so they
are the usual JSON error bodies (401 with ``WWW-Authenticate``; a busy database 503 with
``Retry-After``).

The cap is ``max_upload`` plus :data:`MULTIPART_ROOM` for the multipart framing
(boundaries, part headers, the small form fields). Each uploaded file is held to
``max_upload`` again when it is read (:func:`.uploads.read_upload`). Requests without a
body (GET, DELETE, the documentation pages) pass untouched: their routes check keys.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import cast

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceledger.api.auth import AUTHENTICATED, HEADER, authenticate
from faceledger.api.errors import ApiError
from faceledger.api.service import Service

MULTIPART_ROOM = 64 * 1024
"""Bytes allowed over ``max_upload`` for multipart framing and form fields."""


def body_cap(max_upload: int) -> int:
    """The most bytes a request body may have."""
    return max_upload + MULTIPART_ROOM


def too_large(cap: int) -> ApiError:
    return ApiError(413, "PayloadTooLarge", f"request body over the limit of {cap:,} bytes")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            text: str = value.decode("latin-1")
            return text
    return None


def has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return _header(scope, b"transfer-encoding") is not None or (
        length is not None and length.strip() != "0"
    )


def declared_over(scope: Scope, cap: int) -> bool:
    """Whether the declared ``Content-Length`` is over ``cap`` (or no number at all)."""
    length = _header(scope, b"content-length")
    if length is None:
        return False
    length = length.strip()
    return not (length.isascii() and length.isdigit()) or int(length) > cap


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


async def answer_error(scope: Scope, send: Send, exc: Exception) -> None:
    """Send what the application's exception handler for ``exc`` renders, closing the
    connection after it (the request body is left unread)."""
    handlers = scope["app"].exception_handlers
    handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
    if handler is None:  # errors.install() registers a handler for Exception itself
        raise exc
    rendered = handler(Request(scope), exc)
    response = cast(Response, await rendered if inspect.isawaitable(rendered) else rendered)
    response.headers["Connection"] = "close"
    await response(scope, _no_body, send)


@dataclass
class _Metered:
    """The request's ``receive`` and ``send``, counting the body against ``cap``."""

    scope: Scope
    upstream_receive: Receive
    upstream_send: Send
    cap: int
    received: int = 0
    started: bool = False
    """Whether the application began its answer."""
    refused: bool = False
    """Whether the body passed the cap (the application then sees a disconnect)."""
    answered: bool = False
    """Whether the 413 was sent from here (the application's own answer is dropped)."""

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self.upstream_receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.cap:
                self.refused = True
                if not self.started:
                    self.answered = True
                    await answer_error(self.scope, self.upstream_send, too_large(self.cap))
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self.upstream_send(message)


class BodyLimits:
    """The middleware: key first, then the body, capped while it streams."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    @property
    def cap(self) -> int:
        return body_cap(self.service.config.max_upload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not has_body(scope):
            await self.app(scope, receive, send)
            return
        try:
            await self._authenticate(scope)
            if declared_over(scope, self.cap):
                raise too_large(self.cap)
        except Exception as exc:  # rendered by the app's handlers, as the routes' are
            await answer_error(scope, send, exc)
            return
        metered = _Metered(scope, receive, send, self.cap)
        await self.app(scope, metered.receive, metered.send)

    async def _authenticate(self, scope: Scope) -> None:
        """The 401 (ApiError) unless the request's key is active; a database query, so in
        a worker thread as the routes' own key checks are."""
        token = _header(scope, HEADER.lower().encode())
        key = await anyio.to_thread.run_sync(authenticate, self.service.ops, token)
        # the route's own check takes it from here instead of asking the database again
        scope.setdefault("state", {})[AUTHENTICATED] = key
