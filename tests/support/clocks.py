"""Deterministic clocks for the stores that take one (events, reviews, the ledger)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


class Clock:
    """Stands still until told to move."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Ticker:
    """Moves one second on every reading (ledger entries get distinct times)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def sha(text: str) -> str:
    """A sha256 hex digest, standing for an input image's."""
    return hashlib.sha256(text.encode()).hexdigest()
