"""Accountability and service administration: the audit ledger, API keys, watch lists,
events and their review, retention.

Every change made here is written to the audit ledger in the same transaction as the
change itself, with the operating-system user as actor (role ``cli``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import Connection

from faceledger.access import ApiKey, KeyStore, Role, parse_role
from faceledger.cli.common import (
    Db,
    Json,
    audit_app,
    events_app,
    handle_errors,
    keys_app,
    make_config,
    retention_app,
    watchlists_app,
)
from faceledger.cli.render import emit_json, err, out
from faceledger.config import parse_duration
from faceledger.errors import ConfigError, NotFoundError
from faceledger.events.review import Reviews, ReviewState
from faceledger.events.store import EventRecord, EventStore
from faceledger.gallery.store import Gallery, write_txn
from faceledger.gallery.watchlists import WatchList, WatchLists
from faceledger.images import sha256_of
from faceledger.ledger import Ledger, LedgerEntry
from faceledger.ledger.audit import Actor
from faceledger.ledger.chain import MAX_TEXT
from faceledger.ledger.retention import Policy, run_retention

# ---- shared: the gallery, the ledger, the actor ---------------------------------------------


@contextmanager
def open_gallery(db: Path | None, *, create: bool = False) -> Iterator[Gallery]:
    """The gallery named by --db (or the configuration); a missing one is a usage error
    unless ``create`` (commands that only read should not leave an empty gallery behind)."""
    path = make_config(db=db).db
    if not create and not path.exists():
        raise ConfigError(f"{path}: no gallery there (give --db, or enroll someone first)")
    with Gallery(path) as gallery:
        yield gallery


def log_in(
    conn: Connection,
    ledger: Ledger,
    action: str,
    result: Any,
    *,
    inputs: Iterable[str] = (),
    model: str | None = None,
    purpose: str | None = None,
    case_ref: str | None = None,
) -> LedgerEntry:
    """Append one entry by the OS user (role ``cli``) inside the caller's transaction."""
    actor = Actor.os_user()
    return ledger.append_in(
        conn,
        actor.name,
        actor.role,
        action,
        purpose=purpose,
        case_ref=case_ref,
        inputs=inputs,
        result=result,
        model=model,
    )


def log(
    ledger: Ledger,
    action: str,
    result: Any,
    *,
    inputs: Iterable[str] = (),
    model: str | None = None,
    purpose: str | None = None,
    case_ref: str | None = None,
) -> LedgerEntry:
    """Append one entry by the OS user (role ``cli``) in its own transaction."""
    with write_txn(ledger.engine) as conn:
        return log_in(
            conn,
            ledger,
            action,
            result,
            inputs=inputs,
            model=model,
            purpose=purpose,
            case_ref=case_ref,
        )


def digests_of(paths: Iterable[Path]) -> list[str]:
    """sha256 of each file that can be read (an unreadable one is left out)."""
    found = []
    for path in paths:
        try:
            found.append(sha256_of(path))
        except OSError:
            continue
    return found


def parse_since(text: str | None) -> datetime | None:
    """An ISO date or time (UTC unless it names its zone) -> an aware datetime."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: give an ISO date or time, e.g. 2026-01-31 or 2026-01-31T08:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def short_time(stamp: str | None) -> str:
    return "" if not stamp else stamp[:19].replace("T", " ")


Since = Annotated[
    str | None,
    typer.Option("--since", help="only entries at or after this ISO date/time (UTC by default)"),
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
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Check every entry's hash and its link to the one before; exit 1 if the chain is broken.

    Note the printed head hash somewhere else and pass it back with --head next time.
    """
    with open_gallery(db) as gallery:
        ledger = Ledger(gallery)
        report = ledger.verify(head)
        current = ledger.head()
    if json_out:
        emit_json({**asdict(report), "head": current})
    elif report.ok:
        out.print(f"[green]ledger intact:[/] {report.reason}")
        out.print(f"head {current}  (note it down; check later with --head)", highlight=False)
    else:
        err.print(f"[red]ledger BROKEN:[/] {escape(report.reason)}")
    raise typer.Exit(0 if report.ok else 1)


def _write_entries(fp: IO[str], ledger: Ledger, since: datetime | None) -> int:
    if since is None:
        return ledger.export(fp)
    entries = ledger.entries(since=since)
    for entry in entries:
        fp.write(json.dumps(entry.as_json(), sort_keys=True, ensure_ascii=False) + "\n")
    return len(entries)


def _export_atomically(target: Path, ledger: Ledger, since: datetime | None) -> int:
    """Write to a temporary file beside ``target``, then rename it into place."""
    try:
        handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as fp:
            count = _write_entries(fp, ledger, since)
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
    with open_gallery(db) as gallery:
        ledger = Ledger(gallery)
        head = ledger.head()  # read first: it is then always among the exported entries
        if out_file is None:
            count = _write_entries(sys.stdout, ledger, moment)
            sys.stdout.flush()
        else:
            count = _export_atomically(out_file, ledger, moment)
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
    with open_gallery(db) as gallery:
        entries = Ledger(gallery).entries(moment, action, actor, limit)
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


# ---- keys -----------------------------------------------------------------------------------

ROLES = " | ".join(r.value for r in Role)


def _key_result(key: ApiKey) -> dict[str, str]:
    """What the ledger keeps of a key: never the token (nor its hash)."""
    return {"key": key.id, "name": key.name, "role": key.role.value}


@keys_app.command("create")
@handle_errors
def keys_create(
    role: Annotated[str, typer.Option("--role", "-r", help=f"the key's role: {ROLES}")],
    name: Annotated[
        str, typer.Option("--name", "-n", help="the person or system that will hold the key")
    ],
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Make an API key; its token is printed once and never stored (only its sha256)."""
    wanted = parse_role(role)
    with open_gallery(db, create=True) as gallery:
        ledger = Ledger(gallery)

        def within(conn: Connection, key: ApiKey) -> None:
            log_in(conn, ledger, "key.create", _key_result(key))

        token, key = KeyStore(gallery).create(name, wanted, Actor.os_user().name, within)
    if json_out:
        emit_json({**key.as_json(), "token": token})
    else:
        out.print(f"created key {key.id} for {escape(key.name)} (role {key.role.value})")
        out.print(token, markup=False, highlight=False)
    err.print(
        "[yellow]warning:[/] this token is shown only now: it is not stored (only its sha256 "
        "is). Hand it over safely; if it is lost, revoke the key and create another."
    )


@keys_app.command("list")
@handle_errors
def keys_list(db: Db = None, json_out: Json = False) -> None:
    """Every API key: id, holder, role, when and by whom it was made, whether revoked."""
    with open_gallery(db) as gallery:
        keys = KeyStore(gallery).all()
    if json_out:
        for key in keys:
            emit_json(key.as_json())
        return
    table = Table(title="API keys")
    for col in ("id", "name", "role", "created", "by", "revoked"):
        table.add_column(col)
    for k in keys:
        revoked = short_time(k.revoked_at) if k.revoked_at else "[green]active[/]"
        by = escape(k.created_by)
        table.add_row(k.id, escape(k.name), k.role.value, short_time(k.created_at), by, revoked)
    out.print(table)
    out.print(f"{len(keys)} keys, {sum(k.active for k in keys)} active")


@keys_app.command("revoke")
@handle_errors
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (see: faceledger keys list)")],
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Revoke an API key at once: requests bearing it are refused from now on."""
    with open_gallery(db) as gallery:
        ledger = Ledger(gallery)

        def within(conn: Connection, key: ApiKey) -> None:
            log_in(conn, ledger, "key.revoke", _key_result(key))

        key = KeyStore(gallery).revoke(key_id, within)
    if json_out:
        emit_json(key.as_json())
    else:
        out.print(f"revoked key {key.id} of {escape(key.name)} (role {key.role.value})")


# ---- watch lists ----------------------------------------------------------------------------


def _rule(wl: WatchList) -> str:
    if wl.two_person:
        return "two-person review"
    return "review" if wl.review else "no review"


@watchlists_app.command("create")
@handle_errors
def watchlists_create(
    name: Annotated[str, typer.Argument(help="the list's name")],
    review: Annotated[
        bool, typer.Option("--review", help="matches of its subjects wait for a reviewer")
    ] = False,
    two_person: Annotated[
        bool,
        typer.Option(
            "--two-person", help="matches need two different reviewers to confirm (implies review)"
        ),
    ] = False,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Make an empty watch list, with its review rule."""
    with open_gallery(db, create=True) as gallery:
        ledger = Ledger(gallery)

        def within(conn: Connection, made: WatchList) -> None:
            result = {"watchlist": made.name, "review": made.review, "two_person": made.two_person}
            log_in(conn, ledger, "watchlist.create", result)

        made = WatchLists(gallery).create(name, review, two_person, within)
    if json_out:
        emit_json(made.as_json())
    else:
        out.print(f"created watch list {escape(made.name)} ({_rule(made)})")


@watchlists_app.command("list")
@handle_errors
def watchlists_list(db: Db = None, json_out: Json = False) -> None:
    """Every watch list with its review rule and subjects."""
    with open_gallery(db) as gallery:
        lists = WatchLists(gallery).all()
    if json_out:
        for wl in lists:
            emit_json(wl.as_json())
        return
    table = Table(title="Watch lists")
    for col in ("name", "rule", "subjects", "created"):
        table.add_column(col, overflow="fold")
    for wl in lists:
        members = escape(", ".join(wl.subjects)) or "[dim]none[/]"
        table.add_row(escape(wl.name), _rule(wl), members, short_time(wl.created_at))
    out.print(table)


@watchlists_app.command("add")
@handle_errors
def watchlists_add(
    name: Annotated[str, typer.Argument(help="the watch list")],
    subjects: Annotated[list[str], typer.Argument(help="enrolled subjects to put on it")],
    db: Db = None,
) -> None:
    """Put enrolled subjects on a watch list (all or none of them)."""
    with open_gallery(db) as gallery:
        lists = WatchLists(gallery)
        ledger = Ledger(gallery)
        wanted = list(dict.fromkeys(subjects))
        with write_txn(lists.engine) as conn:
            for subject in wanted:
                lists.add(conn, subject, [name])
            log_in(conn, ledger, "watchlist.add", {"watchlist": name, "subjects": wanted})
    out.print(f"watch list {escape(name)}: added {escape(', '.join(wanted))}")


# ---- events ---------------------------------------------------------------------------------

REVIEW_STATES = ("pending", "confirmed", "rejected")


def _review_text(event: EventRecord) -> str:
    if event.review is None:
        return ""
    if event.review == "pending":
        return f"[yellow]pending[/] (needs {event.reviews_needed})"
    colour = "green" if event.review == "confirmed" else "red"
    return f"[{colour}]{event.review}[/]"


@events_app.command("list")
@handle_errors
def events_list(
    review: Annotated[
        str | None,
        typer.Option("--review", help="only events in this state: pending | confirmed | rejected"),
    ] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="only this subject")] = None,
    source: Annotated[str | None, typer.Option("--source", help="only this video/stream")] = None,
    camera: Annotated[str | None, typer.Option("--camera", help="only this camera")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="the newest N events")] = 50,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """The newest events first (one per decided face track), with their review state."""
    if review is not None and review not in REVIEW_STATES:
        raise ConfigError(f"--review {review!r}: choose one of {', '.join(REVIEW_STATES)}")
    with open_gallery(db) as gallery:
        found = EventStore(gallery).list(
            source=source, subject=subject, limit=limit, review=review, camera=camera
        )
    if json_out:
        for event in found:
            emit_json(event.as_json())
        return
    table = Table(title="Events")
    for col in ("id", "time", "source", "camera", "track", "seconds", "subject", "score"):
        table.add_column(col, overflow="fold")
    table.add_column("review")
    table.add_column("crop")
    for e in found:
        table.add_row(
            str(e.id),
            short_time(e.created_at),
            escape(e.source),
            escape(e.camera or ""),
            str(e.track_id),
            f"{e.first_t:.1f}-{e.last_t:.1f}",
            escape(e.subject) if e.subject else "[yellow]unknown[/]",
            f"{e.score:.3f}",
            _review_text(e),
            "yes" if e.has_crop else "",
        )
    out.print(table)
    out.print(f"{len(found)} events")


def _save_crop(event: EventRecord, target: Path, gallery: Gallery) -> None:
    """Write the event's face crop and record that it left the gallery."""
    if event.crop_png is None:
        raise NotFoundError(f"event {event.id} keeps no face crop (none stored, or erased)")
    try:
        target.write_bytes(event.crop_png)
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write the crop ({exc.strerror})") from None
    log(Ledger(gallery), "event.crop", {"event": event.id}, inputs=[sha256_of(target)])


@events_app.command("show")
@handle_errors
def events_show(
    event_id: Annotated[int, typer.Argument(help="the event's id")],
    crop: Annotated[
        Path | None,
        typer.Option(
            "--crop", help="save the event's face crop (PNG) here (written to the ledger)"
        ),
    ] = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """One event: what was decided, with which score and threshold, and its reviews."""
    with open_gallery(db) as gallery:
        event = EventStore(gallery).get(event_id)
        done = Reviews(gallery).of(event_id)
        if crop is not None:
            _save_crop(event, crop, gallery)
    if json_out:
        emit_json({**event.as_json(), "reviews": [r.as_json() for r in done]})
        return
    who = escape(event.subject) if event.subject else "[yellow]unknown[/]"
    out.print(f"[bold]event {event.id}[/]  {short_time(event.created_at)}  {who}")
    out.print(
        f"source {escape(event.source)}"
        + (f", camera {escape(event.camera)}" if event.camera else "")
        + f", track {event.track_id}, {event.first_t:.2f}-{event.last_t:.2f} s",
        highlight=False,
    )
    out.print(
        f"score {event.score:.3f}, threshold {event.threshold:.3f} "
        f"(false-match rate {event.threshold_fmr:g}), model {event.model_id}",
        highlight=False,
    )
    if event.review is not None:
        out.print(f"review: {_review_text(event)}")
    for r in done:
        note = f": {escape(r.comment)}" if r.comment else ""
        out.print(f"  {short_time(r.at)}  {escape(r.reviewer)} {r.decision}ed{note}")
    if crop is not None:
        out.print(f"face crop written to {crop}")


def _state_text(state: ReviewState) -> str:
    if state.review == "pending":
        return f"[yellow]pending[/]: {state.confirmations} of {state.needed} confirmations"
    colour = "green" if state.review == "confirmed" else "red"
    return f"[{colour}]{state.review}[/]"


@events_app.command("review")
@handle_errors
def events_review(
    event_id: Annotated[int, typer.Argument(help="the event's id")],
    confirm: Annotated[bool, typer.Option("--confirm", help="the match is right")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="the match is wrong")] = False,
    comment: Annotated[
        str | None,
        typer.Option("--comment", "-m", help="why (kept with the review and in the audit ledger)"),
    ] = None,
    reviewer: Annotated[
        str | None,
        typer.Option("--as", help="the reviewer's name (default: your user name)"),
    ] = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Confirm or reject an event. On a two-person watch list, two different reviewers
    must confirm; one rejection decides."""
    if confirm == reject:
        raise ConfigError("give exactly one of --confirm or --reject")
    if comment is not None and len(comment) > MAX_TEXT // 2:
        raise ConfigError(f"--comment is {len(comment)} characters; keep it under {MAX_TEXT // 2}")
    who = (reviewer or Actor.os_user().name).strip()
    with open_gallery(db) as gallery:
        ledger = Ledger(gallery)

        def within(conn: Connection, state: ReviewState) -> None:
            log_in(conn, ledger, "event.review", state.as_json())

        decision = "confirm" if confirm else "reject"
        state = Reviews(gallery).decide(event_id, who, decision, comment, within)
    if json_out:
        emit_json(state.as_json())
    else:
        out.print(f"event {event_id}: {escape(who)} {decision}ed; now {_state_text(state)}")


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
    config = make_config(db=db)
    policy = Policy(
        parse_duration(keep_events, "--keep-events") or config.keep_events,
        parse_duration(keep_evidence, "--keep-evidence") or config.keep_evidence,
    )
    actor = Actor.os_user()
    with open_gallery(db) as gallery:
        report = run_retention(gallery, Ledger(gallery), policy, actor.name, actor.role)
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
