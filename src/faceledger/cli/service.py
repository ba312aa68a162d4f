"""`faceledger keys`, and the small helpers the audit and review commands share (times,
``--since``). The audit and retention commands are in ``cli/audit.py``, watch lists and
reviews in ``cli/review.py``.

Every change is made through :class:`faceledger.operations.Operations` (see
``cli.common.open_ops``), which writes its ledger entry in the same transaction, with the
operating-system user as actor (role ``cli``; ``cli.common.me``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import typer
from rich.table import Table

from faceledger.access import Role, parse_role
from faceledger.cli.common import Db, Json, handle_errors, keys_app, me, open_ops
from faceledger.cli.render import emit_json, err, out
from faceledger.errors import ConfigError
from faceledger.text import shown

# ---- shared: times --------------------------------------------------------------------------


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
    with open_ops(db, create=True) as ops:
        token, key = ops.create_key(me(), name, wanted).value
    if json_out:
        emit_json({**key.as_json(), "token": token})
    else:
        out.print(f"created key {key.id} for {shown(key.name)} (role {key.role.value})")
        out.print(token, markup=False, highlight=False)
    err.print(
        "[yellow]warning:[/] this token is shown only now: it is not stored (only its sha256 "
        "is). Hand it over safely; if it is lost, revoke the key and create another."
    )


@keys_app.command("list")
@handle_errors
def keys_list(db: Db = None, json_out: Json = False) -> None:
    """Every API key: id, holder, role, when and by whom it was made, whether revoked."""
    with open_ops(db) as ops:
        keys = ops.list_keys()
    if json_out:
        for key in keys:
            emit_json(key.as_json())
        return
    table = Table(title="API keys")
    for col in ("id", "name", "role", "created", "by", "revoked"):
        table.add_column(col)
    for k in keys:
        revoked = shown(short_time(k.revoked_at)) if k.revoked_at else "[green]active[/]"
        by = shown(k.created_by)
        table.add_row(
            shown(k.id), shown(k.name), k.role.value, shown(short_time(k.created_at)), by, revoked
        )
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
    with open_ops(db) as ops:
        key = ops.revoke_key(me(), key_id).value
    if json_out:
        emit_json(key.as_json())
    else:
        out.print(f"revoked key {key.id} of {shown(key.name)} (role {key.role.value})")
