"""The audit ledger, for auditors: list, export (JSON lines), verify the chain.

An entry that cannot be read back (crafted or corrupted in the database) makes a list or
an export that includes it a 409 naming it (``error.entry``), before any line is sent;
``/verify`` reports it as the first bad entry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from faceledger.access import ApiKey, Permission
from faceledger.api.auth import ops, require
from faceledger.api.params import Since

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Auditor = Annotated[ApiKey, Depends(require(Permission.audit_read))]
SHA256 = r"^[0-9a-f]{64}$"


class Entry(BaseModel):
    seq: int
    at: str
    actor: str
    role: str
    action: str
    purpose: str | None
    case_ref: str | None
    inputs: list[str]
    result: Any
    gallery: str
    model: str | None
    prev_hash: str
    hash: str


class Verified(BaseModel):
    ok: bool
    entries: int
    first_bad: int | None
    reason: str
    head: str


@router.get(
    "",
    response_model=list[Entry],
    responses={409: {"description": "an entry cannot be read back (named in the error)"}},
)
def list_entries(
    request: Request,
    key: Auditor,
    action: Annotated[str | None, Query(max_length=100)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    since: Since = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    order: Annotated[
        Literal["oldest", "newest"],
        Query(
            description="oldest: the first LIMIT entries, in ledger order; newest: the "
            "last LIMIT, newest first"
        ),
    ] = "oldest",
) -> Any:
    """Entries oldest first (or the newest first), optionally filtered."""
    found = ops(request).audit_entries(since, action, actor, limit, newest=order == "newest")
    return [Entry(**e.as_json()) for e in found]


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}}, "description": "JSON lines"},
        409: {"description": "an entry cannot be read back (named in the error)"},
    },
)
def export(request: Request, key: Auditor) -> StreamingResponse:
    """Every entry as one JSON line, hashes included, for a regulator to check."""
    # read whole before the first byte is sent: an unreadable entry is then a 409, not a
    # stream cut off after its 200
    entries = ops(request).audit_entries()

    def lines() -> Iterator[str]:
        for entry in entries:
            yield json.dumps(entry.as_json(), sort_keys=True, ensure_ascii=False) + "\n"

    headers = {"Content-Disposition": 'attachment; filename="faceledger-audit.jsonl"'}
    return StreamingResponse(lines(), media_type="application/x-ndjson", headers=headers)


@router.get("/verify", response_model=Verified)
def verify(
    request: Request,
    key: Auditor,
    expected_head: Annotated[
        str | None, Query(pattern=SHA256, description="a head noted earlier (detects truncation)")
    ] = None,
) -> Any:
    """Recompute every hash and link; names the first bad entry."""
    gallery = ops(request)
    report = gallery.audit_verify(expected_head)
    return Verified(
        ok=report.ok,
        entries=report.entries,
        first_bad=report.first_bad,
        reason=report.reason,
        head=gallery.audit_head(),
    )
