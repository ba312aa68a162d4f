"""Browser sessions for the operator console: an API key held by the server, behind an
HttpOnly, SameSite=Strict cookie, with a CSRF token for every state-changing request.

Signing in (``POST /v1/session``) exchanges an API key for a random session id (the
cookie) and a random CSRF token (given to the page, never put in a cookie). The key itself
stays in this process's memory: it is never in a URL, the page or the browser's storage.
Every request made with the cookie is authenticated again through the key (a revoked key
ends its sessions at once), and every POST, PUT, PATCH or DELETE must carry the session's
CSRF token in the ``X-CSRF-Token`` header (a cross-site form cannot set a header). A
session ends on sign-out, after :data:`IDLE` without a request, or :data:`LIFETIME` after
sign-in; a restart of the server ends them all.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

COOKIE = "faceledger_session"
CSRF_HEADER = "X-CSRF-Token"
IDLE = timedelta(hours=2)
LIFETIME = timedelta(hours=12)
MAX_SESSIONS = 10_000
"""Sessions kept at once; past it the oldest is dropped (a flood of sign-ins cannot grow
memory without bound)."""
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Session:
    id: str
    token: str
    """The API key it was opened with (kept here, never sent back)."""
    csrf: str
    started: float
    seen: float

    def expires_at(self) -> float:
        return min(self.started + LIFETIME.total_seconds(), self.seen + IDLE.total_seconds())

    def expires_iso(self) -> str:
        moment = datetime.fromtimestamp(self.expires_at(), timezone.utc)
        return moment.isoformat(timespec="seconds")

    def csrf_ok(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


@dataclass
class SessionStore:
    """Open sessions, in memory (thread-safe: routes run in worker threads)."""

    clock: Callable[[], float] = time.time
    _sessions: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, token: str) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), token, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._drop_expired(now)
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session behind a cookie's value (its idle clock restarted), or None."""
        if not session_id or len(session_id) > 100:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if session.expires_at() <= now:
                del self._sessions[session_id]
                return None
            session.seen = now
            return session

    def close(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _drop_expired(self, now: float) -> None:
        for sid in [s.id for s in self._sessions.values() if s.expires_at() <= now]:
            del self._sessions[sid]
