"""The operator console: a browser front end over the REST API, served at ``/``.

The console is static files (HTML, CSS and plain JavaScript modules in ``static/``; no
third-party code, nothing fetched from elsewhere) that call the same ``/v1`` endpoints
as any client, signed in through a session cookie (:mod:`faceledger.api.sessions`). It
adds no power: every page asks the API, which checks the key's role. The pages are sent
with a Content-Security-Policy that allows nothing but this server's own scripts, styles,
images and connections, and forbids framing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
PREFIX = "/console"
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class ConsoleFiles(StaticFiles):
    """The console's files, each sent with :data:`HEADERS` and revalidated on every load
    (an upgraded server never runs with a cached older script)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        response.headers["Cache-Control"] = "no-cache"
        return response


def install(app: FastAPI) -> None:
    """Serve the console: ``/`` (the page) and ``/console/...`` (its files)."""
    app.mount(PREFIX, ConsoleFiles(directory=STATIC, check_dir=False), name="console")

    async def console(_: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={**HEADERS, "Cache-Control": "no-cache"})

    app.router.routes.append(Route("/", console, methods=["GET"], name="console-page"))
