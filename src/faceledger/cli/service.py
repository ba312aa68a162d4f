"""Accountability at the command line: the helpers every ledger-writing command shares
(the gallery, the acting OS user, ledger appends), and `faceledger keys`. The audit and
retention commands are in ``cli/audit.py``, watch lists and reviews in ``cli/review.py``.

Every change made here is written to the audit ledger in the same transaction as the
change itself, with the operating-system user as actor (role ``cli``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import Connection

from faceledger.access import ApiKey, KeyStore, Role, parse_role
from faceledger.cli.common import (
    Db,
    Json,
    handle_errors,
    keys_app,
    make_config,
)
from faceledger.cli.render import emit_json, err, out
from faceledger.errors import ConfigError
from faceledger.gallery.store import Gallery
from faceledger.images import sha256_of
from faceledger.ledger import Ledger, LedgerEntry
from faceledger.ledger.audit import Actor, key_summary

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
    actor = Actor.os_user()
    return ledger.append(
        actor.name,
        actor.role,
        action,
        purpose=purpose,
        case_ref=case_ref,
        inputs=inputs,
        result=result,
        model=model,
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

# ---- keys -----------------------------------------------------------------------------------

ROLES = " | ".join(r.value for r in Role)


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
            log_in(conn, ledger, "key.create", key_summary(key))

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
            log_in(conn, ledger, "key.revoke", key_summary(key))

        key = KeyStore(gallery).revoke(key_id, within)
    if json_out:
        emit_json(key.as_json())
    else:
        out.print(f"revoked key {key.id} of {escape(key.name)} (role {key.role.value})")
