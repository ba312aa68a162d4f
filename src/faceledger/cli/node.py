"""``faceledger node``: run the cameras (``faceledger cameras add ...``) on this machine."""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from faceledger.cli.common import (
    Db,
    Detector,
    Embedder,
    Offline,
    Profile,
    Strictness,
    app,
    handle_errors,
    open_ops,
    stop_on_signals,
)
from faceledger.cli.render import err
from faceledger.config import NodeConfig
from faceledger.events import Dispatcher, JsonlSink, Sink
from faceledger.network.nats import redact_url
from faceledger.network.node import Claims, LocalClaims, Node
from faceledger.operations import Operations
from faceledger.text import shown


@app.command()
@handle_errors
def node(
    name: Annotated[
        str | None,
        typer.Option("--name", help="this node's name in the ledger and health (default: host)"),
    ] = None,
    max_cameras: Annotated[
        int | None, typer.Option("--max-cameras", min=1, help="run at most this many cameras")
    ] = None,
    camera: Annotated[
        list[str] | None,
        typer.Option("--camera", help="run only this camera (repeat for several)"),
    ] = None,
    jsonl: Annotated[
        Path | None, typer.Option("--jsonl", help="append every event to this JSON lines file")
    ] = None,
    webhook: Annotated[
        str | None,
        typer.Option("--webhook", help="POST each event here, through the durable outbox"),
    ] = None,
    mqtt: Annotated[
        str | None,
        typer.Option(
            "--mqtt",
            help="publish events to this MQTT broker (mqtt://[user:pass@]host[:port]): "
            "faceledger/cameras/NAME/events and faceledger/subjects/NAME/events",
        ),
    ] = None,
    nats: Annotated[
        str | None,
        typer.Option(
            "--nats",
            help="share cameras with other nodes through this NATS JetStream server "
            "(nats://host:4222): camera leases, the event stream, archive jobs",
        ),
    ] = None,
    jobs: Annotated[
        bool, typer.Option("--jobs/--no-jobs", help="with --nats: also scan archive jobs")
    ] = True,
    seconds: Annotated[
        float | None,
        typer.Option("--seconds", min=0.0, help="stop after this long (default: until stopped)"),
    ] = None,
    health_every: Annotated[
        float | None,
        typer.Option("--health-every", min=0.1, help="a health line per camera every N s"),
    ] = None,
    profile: Profile = None,
    strictness: Strictness = None,
    embedder: Embedder = None,
    detector: Detector = None,
    db: Db = None,
    offline: Offline = False,
) -> None:
    """Run every camera that is not paused, until stopped (Ctrl-C / SIGTERM).

    The cameras share one inference scheduler: models and the gallery are loaded once,
    and detection and embedding run in batches across cameras. Each camera matches only
    against its own watch lists. A health line per camera (JSON, with its time) goes to
    stderr every --health-every seconds, through outages too; events go to the gallery,
    and to --jsonl, --webhook and --mqtt. Stopping decides every open track first.
    Example: faceledger node --profile fast --jsonl events.jsonl
    """
    node_name = name or socket.gethostname()
    with open_ops(
        db, create=False, profile=profile, strictness=strictness, offline=offline,
        embedder=embedder, detector=detector,
    ) as ops:  # fmt: skip
        config = ops.config.node
        if health_every is not None:
            config = config.model_copy(update={"health_every": health_every})
        ops.load()
        sinks: list[Sink] = []
        if jsonl is not None:
            sinks.append(JsonlSink(jsonl))
        if webhook is not None:
            sinks.append(ops.webhook_sink(webhook))
        if mqtt is not None:
            from faceledger.events.mqtt import MqttSink

            sinks.append(MqttSink(mqtt, node=node_name))
        only = frozenset(camera) if camera else None
        with contextlib.ExitStack() as stack:
            claims: Claims = LocalClaims(max_cameras, only)
            if nats is not None:
                claims = _cluster(
                    stack, ops, nats, node_name, config, sinks, max_cameras, only, jobs
                )
            runner = Node(
                ops, node_name, config=config, claims=claims, dispatcher=Dispatcher(sinks),
                on_health=_health_line,
            )  # fmt: skip
            restore = stop_on_signals(runner.stop, "stopping (draining cameras)")
            try:
                where = f"{ops.db_name}" + (f", {redact_url(nats)}" if nats else "")
                err.print(f"[dim]{shown(node_name)}: running ({shown(where)})[/]")
                runner.run(seconds)
            finally:
                restore()
                runner.dispatcher.close()
        err.print(
            f"{shown(node_name)}: stopped; {runner.events_sent} events, "
            f"{runner.stats.frames} frames in {runner.stats.batches} batches"
        )


def _cluster(
    stack: contextlib.ExitStack,
    ops: Operations,
    url: str,
    node_name: str,
    config: NodeConfig,
    sinks: list[Sink],
    max_cameras: int | None,
    only: frozenset[str] | None,
    jobs: bool,
) -> Claims:
    """Join the nodes on ``url``: leases for the cameras, the event stream as a sink, and
    (``jobs``) a thread scanning archive jobs. Everything is let go when ``stack`` closes:
    the job in hand finished first, then the link closed."""
    from faceledger.network.cluster import EventStreamSink, LeaseClaims
    from faceledger.network.jobs import JobRunner
    from faceledger.network.nats import EventStream, JobQueue, Leases, NatsLink

    link = stack.enter_context(NatsLink(url, name=f"faceledger-node-{node_name}"))
    sinks.append(EventStreamSink(EventStream(link)))
    if jobs:
        queue = JobQueue(link, ack_wait=config.job_ack_wait)
        runner = JobRunner(ops, queue, node_name).start()
        stack.callback(runner.stop)
    return LeaseClaims(
        Leases(link, ttl=config.lease_ttl), node_name, max_cameras=max_cameras, only=only
    )


def _health_line(camera: str, health: dict[str, Any]) -> None:
    line = shown(json.dumps({"camera": camera, **health}))
    err.print(line, markup=False, highlight=False, soft_wrap=True)
