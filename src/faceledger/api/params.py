"""Request parameters shared by several routers."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import Query
from fastapi.responses import Response
from pydantic import AfterValidator

from faceledger.faces.crops import crop_media_type


def _in_utc(value: datetime | None) -> datetime | None:
    """A moment that UTC can express (a naive one is taken as UTC): 0001-01-01T00:00+05:00
    is a valid ISO date that has no UTC form, which is a 422, not a crash in the query."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("outside the range of dates expressible in UTC") from None


Since = Annotated[
    datetime | None,
    AfterValidator(_in_utc),
    Query(description="only what happened at or after this moment (ISO 8601; naive is UTC)"),
]

SQL_ID_MAX = 2**63 - 1
"""The largest row id SQLite stores: a larger one is a 422, not an overflow in the query."""


def crop_response(data: bytes, seq: int) -> Response:
    """A face crop as sent: its image type, the ledger entry that recorded this viewing
    (``X-Ledger-Seq``), and never cached (each viewing is on the record)."""
    media = crop_media_type(data) or "application/octet-stream"
    headers = {"X-Ledger-Seq": str(seq), "Cache-Control": "private, no-store"}
    return Response(data, media_type=media, headers=headers)
