"""Request bodies: not a byte read before the key is checked, none taken past the cap.

A pure ASGI middleware (it buffers nothing). For a request that carries a body
(``Content-Length`` above 0, or ``Transfer-Encoding``, i.e. chunked) it:

1. checks the ``X-API-Key`` header, or the console's session cookie and CSRF token
   (:func:`faceledger.api.auth.authenticate_request`), before the application may read any
   of the body; a missing, unknown or revoked key is answered 401 with the body unread (the
   sign-in request, which brings a key, is held to :data:`SIGN_IN_CAP` bytes instead);
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

from faceledger.api.auth import AUTHENTICATED, authenticate_request
from faceledger.api.errors import ApiError
from faceledger.api.service import Service

MULTIPART_ROOM = 64 * 1024
"""Bytes allowed over ``max_upload`` for multipart framing and form fields."""
SIGN_IN = ("POST", "/v1/session")
"""The one request with a body and no key yet: it brings the key (in at most
:data:`SIGN_IN_CAP` bytes)."""
SIGN_IN_CAP = 4096


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
        signing_in = (scope["method"], scope["path"]) == SIGN_IN
        cap = SIGN_IN_CAP if signing_in else self.cap
        try:
            if not signing_in:
                await self._authenticate(scope)
            if declared_over(scope, cap):
                raise too_large(cap)
        except Exception as exc:  # rendered by the app's handlers, as the routes' are
            await answer_error(scope, send, exc)
            return
        metered = _Metered(scope, receive, send, cap)
        await self.app(scope, metered.receive, metered.send)

    async def _authenticate(self, scope: Scope) -> None:
        """The 401 (ApiError) unless the request's key (header or session cookie, with its
        CSRF token) is active; a database query, so in a worker thread as the routes' own
        key checks are."""
        request = Request(scope)
        key = await anyio.to_thread.run_sync(authenticate_request, self.service, request)
        # the route's own check takes it from here instead of asking the database again
        scope.setdefault("state", {})[AUTHENTICATED] = key
