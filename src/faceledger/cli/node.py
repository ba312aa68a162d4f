"""``faceledger node``: run the cameras (``faceledger cameras add ...``) on this machine."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Callable
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
)
from faceledger.cli.render import err
from faceledger.events import Dispatcher, JsonlSink, Sink
from faceledger.network.node import LocalClaims, Node
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
        claims = LocalClaims(max_cameras, frozenset(camera) if camera else None)
        runner = Node(
            ops, node_name, config=config, claims=claims, dispatcher=Dispatcher(sinks),
            on_health=_health_line,
        )  # fmt: skip
        restore = _stop_on_signals(runner.stop)
        try:
            err.print(f"[dim]{shown(node_name)}: running ({ops.db_name})[/]", markup=True)
            runner.run(seconds)
        finally:
            restore()
            runner.dispatcher.close()
        err.print(
            f"{shown(node_name)}: stopped; {runner.events_sent} events, "
            f"{runner.scheduler.stats.frames} frames in {runner.scheduler.stats.batches} batches"
        )


def _health_line(camera: str, health: dict[str, Any]) -> None:
    err.print(shown(json.dumps({"camera": camera, **health})), markup=False, highlight=False)


def _stop_on_signals(stop: Callable[[], None]) -> Callable[[], None]:
    """SIGINT / SIGTERM stop the node (it drains); returns a function restoring handlers."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: object) -> None:
        err.print(f"[yellow]{signal.Signals(signum).name}: stopping (draining cameras)[/]")
        stop()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
