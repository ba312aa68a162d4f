"""The FastAPI application: routers, error mapping, limits, metrics, CORS (closed)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from faceledger import __version__, web
from faceledger.api import admin, audit, cameras, errors, events, search, session, subjects
from faceledger.api.limits import BodyLimits
from faceledger.api.service import Service
from faceledger.config import Config
from faceledger.operations import Operations

DESCRIPTION = """Accountable face recognition over HTTP. The operator console is at `/`.

Every endpoint needs an API key in the `X-API-Key` header (make one with
`faceledger keys create --role ROLE --name WHO`), or the console's session cookie with its
`X-CSRF-Token` (`POST /v1/session`). Roles: `admin` (keys, watch lists, cameras,
retention), `enroller` (subjects, templates), `operator` (identify, verify, detect, events,
cameras' state), `reviewer` (events, review), `auditor` (the audit ledger). Every search,
enrollment, deletion, review, key and camera change is written to a hash-chained audit
ledger.
"""


def create_app(config: Config, ops: Operations | None = None, *, load: bool = True) -> FastAPI:
    """The API over ``config``'s gallery (opened now); ``ops``: operations to serve
    instead (opened by the caller, who closes them), ``load``: load the models at start-up
    rather than on the first request."""
    svc = Service.open(config, ops)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if load:
            svc.ops.load()
        yield
        svc.close()

    # the documentation pages' scripts and styles are served from here, not from a CDN
    app = FastAPIOffline(
        title="faceledger",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
        static_url="/docs-static",
    )
    app.state.service = svc
    errors.install(app)
    for module in (session, search, subjects, events, audit, admin, cameras):
        app.include_router(module.router)
    web.install(app)
    # innermost first: bodies are limited inside CORS (whose headers reach a 401 or 413),
    # and measured outside both (their 401s and 413s are counted too)
    app.add_middleware(BodyLimits, service=svc)
    if svc.config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=svc.config.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type"],  # never X-CSRF-Token
        )
    _measure(app, svc)
    return app


def _measure(app: FastAPI, svc: Service) -> None:
    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        svc.metrics.in_flight.inc()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            svc.metrics.in_flight.dec()
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            svc.metrics.requests.labels(request.method, path, str(status)).inc()
            svc.metrics.latency.labels(path).observe(time.perf_counter() - started)
