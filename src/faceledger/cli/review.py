"""Watch lists and the human review of events: `faceledger watchlists`, `faceledger events`.

Every change is written to the audit ledger in the same transaction (through
:class:`faceledger.operations.Operations`), with the operating-system user as actor (role
``cli``): a reviewer is always the logged-in person, never a name typed on the command line,
so one person cannot confirm twice under two names on a two-person watch list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from faceledger.cli.common import (
    Db,
    Json,
    events_app,
    handle_errors,
    me,
    open_ops,
    watchlists_app,
)
from faceledger.cli.render import emit_json, out
from faceledger.cli.service import short_time
from faceledger.errors import ConfigError
from faceledger.events.review import ReviewState
from faceledger.events.store import EventRecord
from faceledger.gallery.watchlists import WatchList
from faceledger.text import shown

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
    with open_ops(db, create=True) as ops:
        made = ops.create_watchlist(me(), name, review, two_person).value
    if json_out:
        emit_json(made.as_json())
    else:
        out.print(f"created watch list {shown(made.name)} ({_rule(made)})")


@watchlists_app.command("list")
@handle_errors
def watchlists_list(db: Db = None, json_out: Json = False) -> None:
    """Every watch list with its review rule and subjects."""
    with open_ops(db) as ops:
        lists = ops.list_watchlists()
    if json_out:
        for wl in lists:
            emit_json(wl.as_json())
        return
    table = Table(title="Watch lists")
    for col in ("name", "rule", "subjects", "created"):
        table.add_column(col, overflow="fold")
    for wl in lists:
        members = shown(", ".join(wl.subjects)) or "[dim]none[/]"
        table.add_row(shown(wl.name), _rule(wl), members, short_time(wl.created_at))
    out.print(table)


@watchlists_app.command("add")
@handle_errors
def watchlists_add(
    name: Annotated[str, typer.Argument(help="the watch list")],
    subjects: Annotated[list[str], typer.Argument(help="enrolled subjects to put on it")],
    db: Db = None,
) -> None:
    """Put enrolled subjects on a watch list (all or none of them)."""
    with open_ops(db) as ops:
        wanted = ops.add_to_watchlist(me(), name, subjects).value
    out.print(f"watch list {shown(name)}: added {shown(', '.join(wanted))}")


# ---- events ---------------------------------------------------------------------------------

REVIEW_STATES = ("pending", "confirmed", "rejected")


def _review_text(event: EventRecord) -> str:
    if event.review is None:
        return ""
    if event.review == "pending":
        return f"[yellow]pending[/] (needs {event.reviews_needed})"
    colour = "green" if event.review == "confirmed" else "red"
    return f"[{colour}]{shown(event.review)}[/]"


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
    with open_ops(db) as ops:
        found = ops.list_events(
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
            shown(e.source),
            shown(e.camera or ""),
            str(e.track_id),
            f"{e.first_t:.1f}-{e.last_t:.1f}",
            _who(e),
            f"{e.score:.3f}" if e.score >= -0.5 else "-",
            _review_text(e),
            "yes" if e.has_crop else "",
        )
    out.print(table)
    out.print(f"{len(found)} events")


def _save_crop(crop_png: bytes, target: Path) -> None:
    try:
        target.write_bytes(crop_png)
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write the crop ({exc.strerror})") from None


@events_app.command("show")
@handle_errors
def events_show(
    event_id: Annotated[int, typer.Argument(help="the event's id")],
    crop: Annotated[
        Path | None,
        typer.Option(
            "--crop", help="save the event's face crop (PNG) here (the viewing is recorded)"
        ),
    ] = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """One event: what was decided, with which score and threshold, and its reviews."""
    with open_ops(db) as ops:
        event, done = ops.event(event_id)
        if crop is not None:  # the viewing is recorded before the crop is handed over
            _save_crop(ops.view_evidence(me(), event_id).value, crop)
    if json_out:
        emit_json({**event.as_json(), "reviews": [r.as_json() for r in done]})
        return
    who = _who(event)
    out.print(f"[bold]event {event.id}[/]  {short_time(event.created_at)}  {who}")
    out.print(
        f"source {shown(event.source)}"
        + (f", camera {shown(event.camera)}" if event.camera else "")
        + f", track {event.track_id}, {event.first_t:.2f}-{event.last_t:.2f} s",
        highlight=False,
    )
    out.print(
        f"score {event.score:.3f}, threshold {event.threshold:.3f} "
        f"(false-match rate {event.threshold_fmr:g}), model {shown(event.model_id)}",
        highlight=False,
    )
    if event.review is not None:
        out.print(f"review: {_review_text(event)}")
    for r in done:
        note = f": {shown(r.comment)}" if r.comment else ""
        out.print(f"  {short_time(r.at)}  {shown(r.reviewer)} {shown(r.decision)}ed{note}")
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
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Confirm or reject an event as yourself (your user name); one rejection decides.

    On a two-person watch list two different people must confirm. Example:
    faceledger events review 12 --confirm --comment "checked against the badge photo"
    """
    if confirm == reject:
        raise ConfigError("give exactly one of --confirm or --reject")
    acting = me()
    decision = "confirm" if confirm else "reject"
    with open_ops(db) as ops:
        state = ops.review(acting, event_id, decision, comment).value
    if json_out:
        emit_json(state.as_json())
    else:
        who = shown(acting.actor)
        out.print(f"event {event_id}: {who} {decision}ed; now {_state_text(state)}")


def _who(event: EventRecord) -> str:
    if event.decision == "insufficient_quality":
        return "[magenta]too poor to decide[/]"
    return shown(event.subject) if event.subject else "[yellow]unknown[/]"
