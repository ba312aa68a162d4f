"""What the ledger records for each action: who acts, and summaries without images.

Front ends (CLI, REST) call these so that one action is recorded the same way whoever
asks. The CLI's actor is the operating-system user with role ``cli``; the API's is the
key's name and role.
"""

from __future__ import annotations

import getpass
import hashlib
from dataclasses import dataclass
from typing import Any

from faceledger.access import ApiKey
from faceledger.gallery.store import Erasure
from faceledger.types import ImageResult, Match, Verification

CLI_ROLE = "cli"


@dataclass(frozen=True)
class Actor:
    """Who is acting: a name and a role (an API key's, or the OS user's at the CLI)."""

    name: str
    role: str

    @classmethod
    def os_user(cls) -> Actor:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (some containers)
            name = "unknown-os-user"
        return cls(name, CLI_ROLE)


def _round(value: float) -> float:
    return round(float(value), 4)


def match_summary(match: Match | None) -> dict[str, Any]:
    if match is None:
        return {}
    if match.decision == "insufficient_quality":
        return {"decision": match.decision, "reason": match.reason, "subject": None}
    return {
        "decision": match.decision,
        "subject": match.subject,
        "score": _round(match.score),
        "candidates": [{"subject": c.subject, "score": _round(c.score)} for c in match.candidates],
    }


def identify_summary(result: ImageResult) -> dict[str, Any]:
    """Subjects and scores returned (or unknown), the threshold; never boxes or pixels."""
    if result.error is not None:
        return {"error": result.error}
    faces = [match_summary(f.match) for f in result.faces]
    threshold = next((f.match.threshold for f in result.faces if f.match is not None), None)
    out: dict[str, Any] = {
        "faces": len(faces),
        "known": sum(1 for f in faces if f.get("subject") is not None),
        "insufficient_quality": sum(
            1 for f in faces if f.get("decision") == "insufficient_quality"
        ),
        "matches": faces,
    }
    if threshold is not None:
        out["threshold"] = _round(threshold.value)
        out["threshold_fmr"] = threshold.fmr
    return out


def verify_summary(result: Verification) -> dict[str, Any]:
    return {
        "score": _round(result.score),
        "same": bool(result.same),
        "decision": result.decision,
        "threshold": _round(result.threshold.value),
        "threshold_fmr": result.threshold.fmr,
    }


def name_digest(name: str) -> str:
    """sha256 of a subject's name: what the ledger keeps of an erased subject."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def erasure_summary(erasure: Erasure) -> dict[str, Any]:
    """The fact of an erasure: the name's hash and counts, nothing that names the person."""
    return {
        "subject_sha256": name_digest(erasure.name),
        "templates": erasure.templates,
        "evidence_crops": erasure.evidence_crops,
    }


def tracks_summary(
    matches: list[Match], event_ids: list[int], error: str | None = None
) -> dict[str, Any]:
    """A scan's or a stream's decisions: who was named (best score each), how many were
    unknown, which events hold them; no crops."""
    best: dict[str, float] = {}
    for m in matches:
        if m.subject is not None:
            best[m.subject] = max(best.get(m.subject, -1.0), _round(m.score))
    out: dict[str, Any] = {
        "tracks": len(matches),
        "known": [{"subject": s, "score": best[s]} for s in sorted(best)],
        "unknown": sum(1 for m in matches if m.decision == "unknown"),
        "insufficient_quality": sum(1 for m in matches if m.decision == "insufficient_quality"),
        "events": [min(event_ids), max(event_ids)] if event_ids else [],
    }
    if error is not None:
        out["error"] = error
    return out


def key_summary(key: ApiKey) -> dict[str, str]:
    """What the ledger keeps of a key change: its id, holder and role; never the token."""
    return {"key": key.id, "name": key.name, "role": key.role.value}
