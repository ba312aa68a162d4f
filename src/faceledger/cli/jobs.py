"""``faceledger jobs``: archive footage scanned by the camera nodes (over NATS JetStream)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer

from faceledger.cli.common import Case, Db, Json, app, handle_errors, me, open_ops
from faceledger.cli.render import emit_json, err, out
from faceledger.errors import ConfigError
from faceledger.text import shown

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".avi", ".ts", ".m4v", ".webm", ".mpg"})

jobs_app = typer.Typer(
    help="Archive jobs: video files scanned by whichever camera node takes each one "
    "(faceledger node --nats URL), every file recorded once.",
    no_args_is_help=True,
)
app.add_typer(jobs_app, name="jobs")

Nats = Annotated[str, typer.Option("--nats", help="the nodes' NATS server (nats://host:4222)")]


def videos_in(paths: list[Path]) -> list[Path]:
    """The video files named, and those in the folders named (sorted); ConfigError when a
    path does not exist or nothing is found."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"{path}: no such file or folder")
    if not found:
        raise ConfigError(f"no video files in {', '.join(map(str, paths))}")
    return found


@jobs_app.command("submit")
@handle_errors
def submit(
    paths: Annotated[list[Path], typer.Argument(help="video files, or folders of them")],
    nats: Nats,
    purpose: Annotated[
        str, typer.Option("--purpose", help="why this footage is searched (recorded)")
    ],
    case: Case = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Queue video files for the camera nodes: each file is scanned by one node, recorded
    (job.start, each track, job.end, naming the job) and only then acknowledged; a node
    that dies leaves its file to another. The submission is itself a ledger entry.
    Example: faceledger jobs submit ./recordings/ --purpose "incident 12" --case INC-12
    --nats nats://127.0.0.1:4222
    """
    from faceledger.network.nats import JobQueue, NatsLink

    videos = videos_in(paths)
    acting = me(purpose, case)
    if acting.purpose is None:
        raise ConfigError("--purpose is empty: say why this footage is searched")
    submission = uuid.uuid4().hex[:12]
    with open_ops(db) as ops, NatsLink(nats, name="faceledger-jobs-submit") as link:
        queue = JobQueue(link, ack_wait=ops.config.node.job_ack_wait)
        done = ops.submit_jobs(acting, videos, submission)
        for job in done.value:
            queue.submit(job)
    if json_out:
        emit_json({"submission": submission, "jobs": done.value, "ledger_seq": done.seq})
        return
    out.print(f"submitted {len(videos)} files as {submission}; recorded as ledger entry {done.seq}")
    err.print(f"[dim]the nodes on {shown(nats)} scan them: faceledger jobs status --nats ...[/]")


@jobs_app.command("status")
@handle_errors
def status(nats: Nats, json_out: Json = False) -> None:
    """How many archive jobs wait on the queue (taken ones are counted until acknowledged)."""
    from faceledger.network.nats import JobQueue, NatsLink

    with NatsLink(nats, name="faceledger-jobs-status") as link:
        pending = JobQueue(link).pending()
    if json_out:
        emit_json({"pending": pending})
    else:
        out.print(f"{pending} jobs waiting")
