"""`faceledger audit` (verify, export, list the ledger) and `faceledger retention run`.

The retention run is recorded in the ledger in the same transaction as its deletions.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from faceledger.cli.common import (
    Db,
    Json,
    audit_app,
    handle_errors,
    me,
    open_ops,
    retention_app,
)
from faceledger.cli.render import emit_json, err, out
from faceledger.cli.service import Since, parse_since, short_time
from faceledger.config import parse_duration
from faceledger.errors import ConfigError
from faceledger.ledger import LedgerEntry
from faceledger.ledger.retention import Policy
from faceledger.operations import Operations

# ---- audit ----------------------------------------------------------------------------------


@audit_app.command("verify")
@handle_errors
def audit_verify(
    head: Annotated[
        str | None,
        typer.Option(
            "--head",
            help="a head hash noted earlier: entries cut off the end since then are detected",
        ),
    ] = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Check every entry's hash and its link to the one before; exit 1 if the chain is broken.

    Note the printed head hash somewhere else and pass it back with --head next time.
    """
    with open_ops(db) as ops:
        report = ops.audit_verify(head)
        current = ops.audit_head()
    if json_out:
        emit_json({**asdict(report), "head": current})
    elif report.ok:
        out.print(f"[green]ledger intact:[/] {report.reason}")
        out.print(f"head {current}  (note it down; check later with --head)", highlight=False)
    else:
        err.print(f"[red]ledger BROKEN:[/] {escape(report.reason)}")
    raise typer.Exit(0 if report.ok else 1)


def _write_entries(fp: IO[str], ops: Operations, since: datetime | None) -> int:
    if since is None:
        return ops.audit_export(fp)
    entries = ops.audit_entries(since=since)
    for entry in entries:
        fp.write(json.dumps(entry.as_json(), sort_keys=True, ensure_ascii=False) + "\n")
    return len(entries)


def _export_atomically(target: Path, ops: Operations, since: datetime | None) -> int:
    """Write to a temporary file beside ``target``, then rename it into place."""
    try:
        handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as fp:
            count = _write_entries(fp, ops, since)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


@audit_app.command("export")
@handle_errors
def audit_export(
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="write to this file (atomically) instead of stdout"),
    ] = None,
    since: Since = None,
    db: Db = None,
) -> None:
    """Every entry as one JSON line, hashes included, so anyone can re-check the chain.

    Each entry's hash is the sha256 of the canonical JSON (sorted keys, no spaces) of its
    other fields.
    """
    moment = parse_since(since)
    with open_ops(db) as ops:
        head = ops.audit_head()  # read first: it is then always among the exported entries
        if out_file is None:
            count = _write_entries(sys.stdout, ops, moment)
            sys.stdout.flush()
        else:
            count = _export_atomically(out_file, ops, moment)
    where = f" to {out_file}" if out_file is not None else ""
    err.print(f"exported {count} entries{where}; ledger head {head}", highlight=False)


def summarise(action: str, result: Any, limit: int = 100) -> str:
    """One line for a table: a sentence for searches, else key=value pairs."""
    if isinstance(result, dict) and "error" in result:
        text = f"error: {result['error']}"
    elif action == "identify" and isinstance(result, dict):
        matches = ", ".join(
            f"{m.get('subject') or 'unknown'} {m.get('score', 0):.3f}"
            for m in result.get("matches", [])
            if m
        )
        text = f"{result.get('faces', 0)} faces, {result.get('known', 0)} known" + (
            f": {matches}" if matches else ""
        )
    elif action == "verify" and isinstance(result, dict):
        same = "same person" if result.get("same") else "different people"
        text = f"{same}, score {result.get('score', 0):.3f}"
    elif isinstance(result, dict):
        text = " ".join(f"{k}={_brief(v)}" for k, v in result.items())
    else:
        text = _brief(result)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _brief(value: Any) -> str:
    if isinstance(value, str):
        return value[:12] + "…" if _HEX64.fullmatch(value) else value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _purpose(entry: LedgerEntry) -> str:
    purpose = entry.purpose or ""
    if entry.case_ref:
        purpose += f" (case {entry.case_ref})"
    return purpose.strip()


@audit_app.command("list")
@handle_errors
def audit_list(
    action: Annotated[
        str | None, typer.Option("--action", help="only this action, e.g. identify, enroll")
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="only entries by this actor")] = None,
    since: Since = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="at most this many entries (oldest first)"),
    ] = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Ledger entries in order: who did what, when, why, and what came back."""
    moment = parse_since(since)
    with open_ops(db) as ops:
        entries = ops.audit_entries(moment, action, actor, limit)
    if json_out:
        for entry in entries:
            emit_json(entry.as_json())
        return
    table = Table(title="Audit ledger")
    for col in ("seq", "time", "actor", "role", "action"):
        table.add_column(col, no_wrap=col != "actor")
    table.add_column("purpose", overflow="fold")
    table.add_column("summary", overflow="fold", ratio=1, min_width=30)
    for e in entries:
        table.add_row(
            str(e.seq),
            short_time(e.at),
            escape(e.actor),
            e.role,
            e.action,
            escape(_purpose(e)),
            escape(summarise(e.action, e.result)),
        )
    out.print(table)
    out.print(f"{len(entries)} entries")


# ---- retention ------------------------------------------------------------------------------


@retention_app.command("run")
@handle_errors
def retention_run(
    keep_events: Annotated[
        str | None,
        typer.Option(
            "--keep-events",
            help="delete events (and reviews) older than this, e.g. 365d  [config keep_events]",
        ),
    ] = None,
    keep_evidence: Annotated[
        str | None,
        typer.Option(
            "--keep-evidence",
            help="erase known subjects' face crops in events older than this, e.g. 90d  "
            "[config keep_evidence]",
        ),
    ] = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Apply the retention policy now and record it in the ledger (which is never deleted).

    Strangers' crops (kept only with keep_unknown) are erased once they expire.
    """
    events_for = parse_duration(keep_events, "--keep-events")
    evidence_for = parse_duration(keep_evidence, "--keep-evidence")
    with open_ops(db) as ops:
        policy = Policy(
            events_for or ops.config.keep_events, evidence_for or ops.config.keep_evidence
        )
        report = ops.run_retention(me(), policy)
    if json_out:
        emit_json(report.as_json())
        return
    out.print(
        f"deleted {report.events_deleted} events from before {short_time(report.events_before)}\n"
        f"erased {report.evidence_erased} face crops of known subjects from before "
        f"{short_time(report.evidence_before)}\n"
        f"erased {report.unknown_erased} expired crops of unknown faces\n"
        f"recorded as ledger entry {report.ledger_seq}",
        highlight=False,
    )
