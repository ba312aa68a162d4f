"""`faceledger audit` (verify, export, list the ledger; signed checkpoints and inclusion
proofs) and `faceledger retention run`.

The retention run is recorded in the ledger in the same transaction as its deletions; so
are a signing key's creation (its public half) and each checkpoint. See docs/AUDIT.md.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any, TypeVar

import typer
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
from faceledger.errors import ConfigError, InputError
from faceledger.ledger import LedgerEntry
from faceledger.ledger.retention import Policy
from faceledger.operations import CheckpointReport, Operations
from faceledger.text import shown

signing_key_app = typer.Typer(
    help="Ed25519 keys that sign ledger checkpoints (kept in files, never in the database).",
    no_args_is_help=True,
)
audit_app.add_typer(signing_key_app, name="signing-key")

Origin = Annotated[
    str | None,
    typer.Option(
        "--origin",
        help="the checkpoint's origin line  [default: faceledger/<database name>]",
    ),
]

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
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="a signed checkpoint (faceledger audit checkpoint): is today's ledger an "
            "append-only extension of it?",
        ),
    ] = None,
    vkey: Annotated[
        str | None,
        typer.Option("--vkey", help="the checkpoint key's public vkey, or a file holding it"),
    ] = None,
    origin: Origin = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Check every entry's hash and its link to the one before; exit 1 if the chain is broken.

    With --checkpoint and --vkey, also check the signed checkpoint: its signature, that the
    ledger still has its entries (not truncated) and that they still hash to its root (not
    rewritten), with the consistency proof from it to today's ledger.
    """
    note = _read_checkpoint(checkpoint) if checkpoint is not None else None
    if note is not None and vkey is None:
        raise ConfigError("--checkpoint needs --vkey: the public key the checkpoint is signed by")
    with open_ops(db) as ops:
        report = ops.audit_verify(head)
        current = ops.audit_head()
        signed = None
        if note is not None and vkey is not None:
            signed = _with_source(
                checkpoint, lambda: ops.verify_checkpoint(note, _vkey(vkey), origin)
            )
    ok = report.ok and (signed is None or signed.ok)
    if json_out:
        extra = {} if signed is None else {"checkpoint": signed.as_json()}
        emit_json({**asdict(report), "head": current, **extra})
        raise typer.Exit(0 if ok else 1)
    if report.ok:
        out.print(f"[green]ledger intact:[/] {report.reason}")
        out.print(f"head {current}  (note it down; check later with --head)", highlight=False)
    else:
        err.print(f"[red]ledger BROKEN:[/] {shown(report.reason)}")
    if signed is not None:
        _print_checkpoint_report(signed)
    raise typer.Exit(0 if ok else 1)


def _print_checkpoint_report(report: CheckpointReport) -> None:
    if report.ok:
        out.print(f"[green]checkpoint holds:[/] {shown(report.reason)}")
        out.print(
            f"consistency proof {report.checkpoint_size} -> {report.ledger_size}: "
            f"{len(report.consistency_proof)} hashes, root now {report.ledger_root}",
            highlight=False,
        )
    else:
        err.print(f"[red]checkpoint FAILED:[/] {shown(report.reason)}")


def _read_checkpoint(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such checkpoint file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read the checkpoint ({reason})") from None


def _vkey(value: str) -> str:
    """A vkey given as text, or the first line of a file holding one."""
    path = Path(value)
    if "+" not in value or path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError):
            raise ConfigError(f"{value}: neither a vkey (NAME+KEYHASH+KEY) nor a file") from None
        if not lines:
            raise ConfigError(f"{value}: the vkey file is empty")
        return lines[0]
    return value


T = TypeVar("T")


def _with_source(path: Path | None, call: Callable[[], T]) -> T:
    """``call()``, naming ``path`` in the error when the checkpoint in it is malformed."""
    try:
        return call()
    except InputError as exc:
        if path is None or exc.source != "checkpoint note":
            raise
        raise InputError(str(path), f"not a checkpoint note: {exc.reason}") from None


def _write_atomically(target: Path, write: Callable[[IO[str]], T], public: bool = False) -> T:
    """Write to a temporary file beside ``target``, then rename it into place (mode 0600,
    or 0644 when ``public``: a checkpoint is meant to be read by anyone)."""
    try:
        handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as fp:
            done = write(fp)
            fp.flush()
            os.fsync(fp.fileno())
        if public:
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return done


def _write_entries(fp: IO[str], ops: Operations, since: datetime | None) -> int:
    if since is None:
        return ops.audit_export(fp)
    entries = ops.audit_entries(since=since)
    for entry in entries:
        fp.write(json.dumps(entry.as_json(), sort_keys=True, ensure_ascii=False) + "\n")
    return len(entries)


def _export_atomically(target: Path, ops: Operations, since: datetime | None) -> int:
    return _write_atomically(target, lambda fp: _write_entries(fp, ops, since))


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
            "too poor to decide"
            if m.get("decision") == "insufficient_quality"
            else f"{m.get('subject') or 'unknown'} {m.get('score', 0):.3f}"
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
            shown(e.actor),
            shown(e.role),
            shown(e.action),
            shown(_purpose(e)),
            shown(summarise(e.action, e.result)),
        )
    out.print(table)
    out.print(f"{len(entries)} entries")


# ---- signed checkpoints and inclusion proofs ------------------------------------------------


@signing_key_app.command("create")
@handle_errors
def signing_key_create(
    out_file: Annotated[
        Path,
        typer.Option("--out", "-o", help="the key file to write (mode 0600; never overwritten)"),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="the key's name  [default: the checkpoint origin]"),
    ] = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Make an Ed25519 key that signs checkpoints; print its public vkey to publish.

    The private key stays in the file (keep it off the database server, readable only by
    whoever makes checkpoints); the ledger records the public key. A rotation is another
    create.
    """
    with open_ops(db) as ops:
        made = ops.create_signing_key(me(), out_file, name)
    verifier = made.value
    if json_out:
        emit_json(
            {"vkey": verifier.vkey, "name": verifier.name, "file": str(out_file), "seq": made.seq}
        )
        return
    sys.stdout.write(verifier.vkey + "\n")
    err.print(
        f"wrote signing key {shown(verifier.name)} to {shown(str(out_file))} (mode 0600); "
        f"publish the vkey above; recorded as ledger entry {made.seq}",
        highlight=False,
    )


@audit_app.command("checkpoint")
@handle_errors
def audit_checkpoint(
    key: Annotated[
        Path, typer.Option("--key", help="the signing key file (faceledger audit signing-key)")
    ],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="write the note here (atomically) instead of stdout"),
    ] = None,
    origin: Origin = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Sign a checkpoint of the ledger (a C2SP tlog-checkpoint note) and record it.

    The checkpoint covers every entry before its own `audit.checkpoint` entry. Publish it
    where the database's administrators cannot change it; check it later with
    `faceledger audit verify --checkpoint CP --vkey VKEY`.
    """
    with open_ops(db) as ops:
        made = ops.checkpoint(me(), key, origin)
    signed = made.value
    for warning in signed.warnings:
        err.print(f"[yellow]warning:[/] {shown(warning)}")
    if out_file is not None:
        _write_atomically(out_file, lambda fp: fp.write(signed.note), public=True)
    cp = signed.checkpoint
    if json_out:
        emit_json(
            {
                "origin": cp.origin,
                "size": cp.size,
                "root": cp.root.hex(),
                "vkey": signed.vkey,
                "note": signed.note,
                "seq": made.seq,
                "warnings": list(signed.warnings),
            }
        )
    elif out_file is None:
        sys.stdout.write(signed.note)
    where = f"written to {shown(str(out_file))}; " if out_file is not None else ""
    err.print(
        f"checkpoint of {cp.size} entries of {shown(cp.origin)}, root {cp.root.hex()}; "
        f"{where}recorded as ledger entry {made.seq}",
        highlight=False,
    )


@audit_app.command("prove")
@handle_errors
def audit_prove(
    seq: Annotated[int, typer.Argument(help="the entry to prove (its seq)")],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="write the proof here (atomically) instead of stdout"),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint", help="prove it against this signed checkpoint  [default: today's root]"
        ),
    ] = None,
    origin: Origin = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """An inclusion proof of one entry (JSON): the entry, its audit path and the checkpoint.

    Anyone can check it with docs/verify_inclusion.py (Python and `cryptography` only):
    `python verify_inclusion.py PROOF --vkey VKEY`.
    """
    note = _read_checkpoint(checkpoint) if checkpoint is not None else None
    with open_ops(db) as ops:
        document = _with_source(checkpoint, lambda: ops.prove(seq, note, origin))
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out_file is None:
        sys.stdout.write(text)
    else:
        _write_atomically(out_file, lambda fp: fp.write(text))
        if json_out:
            summary = {k: document[k] for k in ("origin", "tree_size", "leaf_index", "root")}
            emit_json({**summary, "seq": seq, "file": str(out_file)})
    against = "the checkpoint" if note is not None else "today's root (no signature)"
    err.print(
        f"entry {seq} of {document['tree_size']}: {len(document['audit_path'])} hashes to "
        f"{against}" + (f"; written to {shown(str(out_file))}" if out_file else ""),
        highlight=False,
    )


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
