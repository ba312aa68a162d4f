"""``faceledger serve``: the REST API (uvicorn), on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from faceledger.cli.common import Db, Offline, Profile, Strictness, app, handle_errors
from faceledger.cli.render import err
from faceledger.config import load_config

GRACE_S = 3
"""Seconds a stopping server waits for open requests (a live event feed never ends on its
own) before it closes them."""


@app.command()
@handle_errors
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="address to bind [default 127.0.0.1: this machine only; 0.0.0.0 exposes "
            "it to the network, put TLS in front]",
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="[default 8765]")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=0,
            help="inference threads per request [default 1: concurrent requests run side by "
            "side, 1.5x the throughput of all-cores sessions with 4 clients on 2 cores; "
            "env FACELEDGER_THREADS]",
        ),
    ] = None,
    profile: Profile = None,
    db: Db = None,
    strictness: Strictness = None,
    offline: Offline = False,
) -> None:
    """Serve the REST API and the operator console, on 127.0.0.1 unless told otherwise
    (the console at /, the OpenAPI page at /docs).

    Every call needs an API key in the X-API-Key header; make one with:
    faceledger keys create --role operator --name alice
    """
    import uvicorn

    from faceledger.api import create_app

    if threads is None and "FACELEDGER_THREADS" not in os.environ:
        threads = 1  # measured in docs/SERVICE.md: one thread per request serves best
    config = load_config(
        profile=profile,
        db=db,
        strictness=strictness,
        offline=offline or None,
        host=host,
        port=port,
        threads=threads,
    )
    application = create_app(config)
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] listening on {config.host}: reachable from the network")
    base = f"http://{config.host}:{config.port}"
    err.print(f"faceledger console on {base}/  API docs on {base}/docs  (gallery {config.db})")
    # open live feeds (the console's review queue) are cut after a few seconds at shutdown
    uvicorn.run(
        application,
        host=config.host,
        port=config.port,
        log_level="warning",
        timeout_graceful_shutdown=GRACE_S,
    )
