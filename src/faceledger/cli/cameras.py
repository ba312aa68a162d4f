"""`faceledger cameras`: cameras as records (add, list, show, pause, resume, remove).

A camera is added with its purpose, its legal basis and the watch lists it may match
against; every change is written to the audit ledger in the same transaction (through
:class:`faceledger.operations.Operations`), with the operating-system user as actor (role
``cli``). A camera's address may carry credentials (``rtsp://user:pass@host/x``): they are
kept to connect and never shown; every line, table and JSON object here shows the address
masked (``rtsp://***@host/x``), and so does every error message.

:meth:`faceledger.gallery.cameras.Camera.as_json` is what every front end shows.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from faceledger.cli.common import Db, Json, app, handle_errors, me, open_ops
from faceledger.cli.render import emit_json, out
from faceledger.cli.service import short_time
from faceledger.errors import ConfigError
from faceledger.gallery.cameras import TRANSPORTS, Camera, CameraSettings
from faceledger.operations import Recorded
from faceledger.text import shown

cameras_app = typer.Typer(
    help="Cameras as records: each with its purpose, legal basis and the watch lists it may "
    "match against; every change is on the audit ledger, and stream credentials are never "
    "shown.",
    no_args_is_help=True,
)
app.add_typer(cameras_app, name="cameras")

# ---- helpers --------------------------------------------------------------------------------


def _state(view: dict[str, Any]) -> str:
    return "[yellow]paused[/]" if view["paused"] else "[green]running[/]"


def _health_state(view: dict[str, Any]) -> str:
    health = view.get("health")
    if not isinstance(health, dict):
        return "[dim]no report[/]"
    return shown(str(health.get("state", "?")))


def _recorded(verb: str, done: Recorded[Camera], json_out: bool) -> None:
    view = done.value.as_json()
    if json_out:
        emit_json({**view, "ledger_seq": done.seq})
        return
    out.print(
        f"{verb} camera {shown(view['name'])} ({shown(view['url'])}); "
        f"recorded as ledger entry {done.seq}",
        highlight=False,
    )


def _lists(given: list[str] | None) -> tuple[str, ...]:
    return tuple(part.strip() for item in given or [] for part in item.split(",") if part.strip())


CameraName = Annotated[str, typer.Argument(help="the camera's name (see: faceledger cameras list)")]

# ---- commands -------------------------------------------------------------------------------


@cameras_app.command("add")
@handle_errors
def cameras_add(
    name: Annotated[
        str,
        typer.Argument(
            help="the camera's name: 1-64 letters, digits, '.', '_' or '-' (e.g. door-1)"
        ),
    ],
    url: Annotated[
        str,
        typer.Argument(
            help="the stream: rtsp://, rtsps://, http(s)://, udp://, tcp://, rtmp:// or "
            "/dev/videoN; credentials (rtsp://user:pass@host/x) are kept to connect and "
            "never shown",
            show_default=False,
        ),
    ],
    purpose: Annotated[
        str,
        typer.Option(
            "--purpose",
            help="why this camera runs, e.g. 'access control, door 1' (required; stored "
            "with the camera and recorded in the audit ledger)",
            show_default=False,
        ),
    ],
    basis: Annotated[
        str,
        typer.Option(
            "--basis",
            "-b",
            help="the legal basis for recognising faces at this camera, e.g. 'works "
            "agreement 2026-04' (required)",
            show_default=False,
        ),
    ],
    watchlists: Annotated[
        list[str],
        typer.Option(
            "--watchlists",
            "--watchlist",
            "-w",
            help="the watch lists it matches against, comma-separated or repeated (e.g. "
            "staff,banned): anyone on none of them is 'unknown' here (required; create "
            "them first with: faceledger watchlists create)",
            show_default=False,
        ),
    ],
    detect_fps: Annotated[
        float, typer.Option("--detect-fps", help="frames a second run through detection (0.1-60)")
    ] = 5.0,
    min_face: Annotated[
        int | None,
        typer.Option(
            "--min-face",
            help="ignore faces smaller than this, in pixels (8-2000)  [default: the detector's]",
            show_default=False,
        ),
    ] = None,
    detect_url: Annotated[
        str | None,
        typer.Option(
            "--detect-url",
            help="a lower-resolution sub-stream to detect on (e.g. rtsp://host/sub); "
            "credentials in it are never shown either",
            show_default=False,
        ),
    ] = None,
    transport: Annotated[
        str, typer.Option("--transport", help=f"RTSP transport: {' | '.join(TRANSPORTS)}")
    ] = "tcp",
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", help="seconds to wait for the stream before reconnecting (0.5-300)"
        ),
    ] = 10.0,
    db: Db = None,
    json_out: Json = False,
) -> None:
    r"""Add a camera, with why it runs, its legal basis and whom it may recognise.

    It starts once a node picks it up; the change is recorded in the audit ledger.

    Example:

      faceledger cameras add door-1 rtsp://user:pass@10.0.0.5/stream \
        --purpose "access control, door 1" --basis "works agreement 2026-04" \
        --watchlists staff,banned
    """
    settings = CameraSettings(
        name=name,
        url=url,
        purpose=purpose,
        legal_basis=basis,
        watchlists=_lists(watchlists),
        detect_fps=detect_fps,
        min_face=min_face,
        detect_url=detect_url,
        transport=transport,
        timeout=timeout,
    )
    with open_ops(db) as ops:
        done = ops.add_camera(me(), settings)
    _recorded("added", done, json_out)


@cameras_app.command("list")
@handle_errors
def cameras_list(db: Db = None, json_out: Json = False) -> None:
    """Every camera: its address (masked), purpose, watch lists, paused or not, health.

    The health is what the node running the camera last reported, with its time.

    Example: faceledger cameras list --json
    """
    with open_ops(db) as ops:
        views = [c.as_json() for c in ops.list_cameras()]
    if json_out:
        for view in views:
            emit_json(view)
        return
    table = Table(title="Cameras")
    for col in ("name", "address", "purpose", "watch lists", "fps", "state", "node", "health"):
        table.add_column(col, overflow="fold", no_wrap=col in ("fps", "state"))
    table.add_column("reported", overflow="fold")
    for v in views:
        table.add_row(
            shown(v["name"]),
            shown(v["url"]),
            shown(v["purpose"]),
            shown(", ".join(v["watchlists"])),
            f"{v['detect_fps']:g}",
            _state(v),
            shown(v["node"] or "") or "[dim]none[/]",
            _health_state(v),
            short_time(v["health_at"]),
        )
    out.print(table)
    paused = sum(v["paused"] for v in views)
    out.print(f"{len(views)} cameras, {paused} paused")


@cameras_app.command("show")
@handle_errors
def cameras_show(name: CameraName, db: Db = None, json_out: Json = False) -> None:
    """One camera: every setting (the address masked), and its last health report.

    Example: faceledger cameras show door-1
    """
    with open_ops(db) as ops:
        view = ops.camera(name).as_json()
    if json_out:
        emit_json(view)
        return
    detect = view["detect_url"]
    min_face = view["min_face"]
    rows = [
        ("address", shown(view["url"])),
        ("detection sub-stream", shown(detect) if detect else "[dim]the main stream[/]"),
        ("transport", shown(view["transport"])),
        ("purpose", shown(view["purpose"])),
        ("legal basis", shown(view["legal_basis"])),
        ("watch lists", shown(", ".join(view["watchlists"]))),
        ("detect fps", f"{view['detect_fps']:g}"),
        ("min face", "[dim]the detector's[/]" if min_face is None else f"{min_face} px"),
        ("timeout", f"{view['timeout']:g} s"),
        ("state", _state(view)),
        ("created", short_time(view["created_at"])),
        ("changed", short_time(view["updated_at"])),
        ("node", shown(view["node"] or "") or "[dim]none has reported[/]"),
        ("health", _health_state(view)),
        ("reported", short_time(view["health_at"]) or "[dim]never[/]"),
    ]
    out.print(f"[bold]camera {shown(view['name'])}[/]", highlight=False)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        out.print(f"  {label:<{width}}  {value}", highlight=False)
    health = view["health"]
    if isinstance(health, dict):
        for key in sorted(health, key=str):
            if key != "state":
                out.print(f"    {shown(str(key))}: {shown(str(health[key]))}", highlight=False)


@cameras_app.command("pause")
@handle_errors
def cameras_pause(name: CameraName, db: Db = None, json_out: Json = False) -> None:
    """Pause a camera: its node stops it within seconds (recorded in the audit ledger).

    Example: faceledger cameras pause door-1
    """
    with open_ops(db) as ops:
        done = ops.set_camera_paused(me(), name, True)
    _recorded("paused", done, json_out)


@cameras_app.command("resume")
@handle_errors
def cameras_resume(name: CameraName, db: Db = None, json_out: Json = False) -> None:
    """Resume a paused camera (recorded in the audit ledger).

    Example: faceledger cameras resume door-1
    """
    with open_ops(db) as ops:
        done = ops.set_camera_paused(me(), name, False)
    _recorded("resumed", done, json_out)


@cameras_app.command("remove")
@handle_errors
def cameras_remove(
    name: CameraName,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Delete a camera's record (asks first, unless --yes); its events are kept.

    The removal is recorded in the audit ledger.

    Example: faceledger cameras remove door-1 --yes
    """
    with open_ops(db) as ops:
        ops.camera(name)  # raises NotFoundError before asking
        if not yes:
            if not sys.stdin.isatty():
                raise ConfigError("refusing to remove a camera without confirmation; pass --yes")
            typer.confirm(f"Remove camera {name!r}?", abort=True)
        done = ops.remove_camera(me(), name)
    _recorded("removed", done, json_out)
