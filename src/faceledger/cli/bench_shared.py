"""``faceledger bench shared-db``: API servers and CLI loops on one PostgreSQL database."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from faceledger.cli.bench import JsonFile, bench_app
from faceledger.cli.common import Profile, handle_errors
from faceledger.cli.render import err, out
from faceledger.errors import ConfigError

if TYPE_CHECKING:
    from faceledger.bench.shared import Result


@bench_app.command("shared-db")
@handle_errors
def shared_db(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="postgresql://user@host:port/name to share [default: a throw-away PostgreSQL "
            "server started for the run]",
        ),
    ] = None,
    seconds: Annotated[
        float, typer.Option("--seconds", min=1, max=600, help="how long the processes run")
    ] = 60.0,
    servers: Annotated[
        int, typer.Option("--servers", min=0, max=8, help="`faceledger serve` processes")
    ] = 2,
    cli_loops: Annotated[
        int,
        typer.Option("--cli-loops", min=0, max=8, help="processes looping faceledger commands"),
    ] = 2,
    clients: Annotated[
        int, typer.Option("--clients", min=1, max=8, help="client threads per server")
    ] = 2,
    identifies: Annotated[
        int,
        typer.Option("--identifies", min=0, max=50, help="identifies per enroll-erase cycle"),
    ] = 4,
    profile: Profile = None,
    images: Annotated[
        Path, typer.Option("--images", help="a folder of person folders to enroll and search")
    ] = Path("../shared/datasets/smoke/identities"),
    models: Annotated[
        Path | None,
        typer.Option(
            "--models",
            help="folder of model files [default: FACELEDGER_MODEL_MIRROR, else ../shared/models]",
        ),
    ] = None,
    json_file: JsonFile = None,
) -> None:
    """Several processes on one PostgreSQL database at once, each enrolling, identifying and
    erasing; then the ledger check: one entry per answered request or command, by action and
    actor, every ledger_seq distinct and recorded, no seq used twice, the chain intact.

    The API servers are driven by client threads here; each CLI loop is a process calling
    the faceledger command in-process, one command at a time (no re-import per command).
    The profile is `fast` when its models load (its MobileFaceNet stand-in without
    PyTorch), else `embedded`; models are never downloaded. Exit 1 on any error or ledger
    mismatch.
    """
    try:
        from faceledger.bench import shared
    except ImportError as exc:
        if exc.name != "httpx":
            raise
        raise ConfigError(
            "bench shared-db needs httpx for its clients: pip install httpx"
        ) from None
    settings = {"FACELEDGER_OFFLINE": "1"}
    mirror = models or _default_mirror()
    if mirror is not None:
        settings["FACELEDGER_MODEL_MIRROR"] = str(mirror.resolve())
    options = shared.Options(
        db=db,
        seconds=seconds,
        servers=servers,
        cli_loops=cli_loops,
        clients=clients,
        identifies=identifies,
        profile=profile,
        images=images,
        settings=settings,
    )
    result = shared.run(options, say=lambda line: err.print(line, highlight=False, markup=False))
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(result.as_json(), indent=2) + "\n")
        err.print(f"wrote {json_file}", highlight=False)
    out.print(processes_table(result))
    out.print(actions_table(result))
    out.print(ledger_table(result))
    out.print(check_table(result))
    if not result.ok:
        for name, log in result.logs.items():
            if log:
                err.print(f"--- {name} (end of its output) ---", markup=False, highlight=False)
                err.print(log, markup=False, highlight=False)
        for proc in result.processes:
            for sample in proc.error_samples:
                err.print(f"{proc.name}: {sample}", markup=False, highlight=False)
        raise typer.Exit(1)


def _default_mirror() -> Path | None:
    if os.environ.get("FACELEDGER_MODEL_MIRROR"):
        return Path(os.environ["FACELEDGER_MODEL_MIRROR"])
    fallback = Path("../shared/models")
    return fallback if fallback.is_dir() else None


def processes_table(result: Result) -> Table:
    where = result.db + (" (throw-away)" if result.throwaway else "")
    table = Table(
        title=f"{len(result.processes)} processes on {where}\n{result.profile} "
        f"({result.model}), {result.cores} cores, {result.seconds:.1f} s"
    )
    for col in ("process", "actor", "seconds", "answered", "per s", "errors"):
        right = col in ("seconds", "answered", "per s")
        table.add_column(col, justify="right" if right else "left", no_wrap=not right)
    for proc in result.processes:
        table.add_row(
            f"{proc.name} ({'serve' if proc.kind == 'api server' else 'loop'})",
            proc.actor,
            f"{proc.seconds:.1f}",
            f"{proc.answered:,}",
            f"{proc.per_s:.2f}",
            _errors(proc.errors),
        )
    table.add_row(
        "[bold]total[/]",
        "",
        f"{result.seconds:.1f}",
        f"[bold]{result.answered:,}[/]",
        f"[bold]{result.per_s:.2f}[/]",
        _errors({"": result.error_count} if result.error_count else {}),
    )
    return table


def actions_table(result: Result) -> Table:
    actions = list(dict.fromkeys(a for p in result.processes for a in p.actions))
    table = Table(title="Answered by action (mean latency)")
    table.add_column("process")
    for action in actions:
        table.add_column(action, justify="right")
    for proc in result.processes:
        cells = [
            f"{proc.actions[a]:,} ({proc.mean_ms.get(a, 0):.0f} ms)" if a in proc.actions else "-"
            for a in actions
        ]
        table.add_row(proc.name, *cells)
    return table


def ledger_table(result: Result) -> Table:
    check = result.ledger
    table = Table(title="Ledger: one entry per answered request or command, by actor and action")
    for col in ("actor", "action", "answered", "entries", "check"):
        table.add_column(col, justify="right" if col in ("answered", "entries") else "left")
    for tally in check.tallies:
        mark = "[green]ok[/]" if tally.ok else "[red]MISMATCH[/]"
        table.add_row(tally.actor, tally.action, f"{tally.answered:,}", f"{tally.entries:,}", mark)
    return table


def check_table(result: Result) -> Table:
    check = result.ledger
    table = Table(title="Ledger check")
    table.add_column("measure")
    table.add_column("value", justify="right")
    missing = ", ".join(f"{a} {n:,}" for a, n in check.seqs_missing.items())
    returned = f"{check.seqs_returned:,}" + (f" (none on {missing})" if missing else "")
    rows = [
        ("entries written", f"{check.entries:,} (after {check.before:,} already there)"),
        ("entries by action", ", ".join(f"{a} {n:,}" for a, n in check.by_action.items())),
        ("ledger_seq returned by the API", returned),
        ("ledger_seq distinct, each its action's entry", f"{check.seqs_distinct}, "
                                                          f"{check.seqs_in_ledger}"),
        ("no seq used twice, no gap", f"{check.seqs_unique}, {check.seqs_contiguous}"),
        ("Ledger.verify()", check.chain),
        ("ledger check", "[green]ok[/]" if check.ok else "[red]FAILED[/]"),
        ("errors", "[green]0[/]" if not result.error_count else f"[red]{result.error_count}[/]"),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return table


def _errors(errors: dict[str, int]) -> str:
    if not errors:
        return "[green]0[/]"
    return "[red]" + ", ".join(f"{k} x{n}" if k else str(n) for k, n in errors.items()) + "[/]"
