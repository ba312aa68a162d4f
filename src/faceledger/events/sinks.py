"""Where events go: a JSONL file, stdout, a webhook (through a durable outbox), or several.

A sink takes one event as a JSON-ready dict (``EventRecord.as_json()``); a
:class:`Dispatcher` hands each event to several sinks, and a failing sink never stops
the others or the scan that produced the event.

Webhook delivery is **at-least-once, in order**:

- ``send`` first writes the event to the ``outbox`` table (same database as the gallery)
  and returns; a background thread POSTs the oldest row, deletes it on a 2xx answer,
  otherwise records ``attempts``/``last_error`` and retries it after an exponential
  back-off (``backoff=(first, cap)`` seconds). Later rows wait behind it (order is kept).
- A server that is down or times out is retried for as long as it takes. A server that
  answers (non-2xx, redirects included) ``max_attempts`` times for the same event gets
  that event *parked* (``next_attempt_at`` NULL, kept for inspection) so that one bad
  event cannot block the queue; the next sink started over this database retries it.
- The outbox holds at most ``max_outbox`` rows per sink: when full, the OLDEST rows are
  dropped, counted in ``dropped`` and logged.
- On start, rows left by a previous run go first. ``close(timeout)`` delivers what it can
  in that time and leaves the rest in the outbox for the next start.
- Duplicates are possible (a POST that succeeded but whose row was not yet deleted when
  the process died, or whose answer was lost): each request carries an ``Idempotency-Key``
  header (the outbox row id, stable across retries and restarts) and the event's ``id``.
  Run one sink per (database, sink name) at a time.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import sqlalchemy as sa

from faceledger.db import Store
from faceledger.db.schema import outbox
from faceledger.errors import ConfigError, StorageError
from faceledger.events.store import Clock, engine_of, iso, utc_now

log = logging.getLogger(__name__)


@runtime_checkable
class Sink(Protocol):
    """Takes events one at a time; ``close`` releases what it holds."""

    def send(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """Appends one JSON line per event; each line is flushed and fsynced before ``send`` returns."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
            if self._file.tell() > 0 and _last_byte(self.path) != b"\n":
                self._file.write("\n")  # a line cut short by a crash stays on its own
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot append events ({exc})") from exc

    def send(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r})"


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


class StdoutSink:
    """One JSON line per event on standard output (or ``stream``)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def send(self, event: dict[str, Any]) -> None:
        self.stream.write(json.dumps(event, ensure_ascii=False) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()

    def __repr__(self) -> str:
        return "StdoutSink()"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a delivery: urllib would re-send a POST as a bodiless GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSink:
    """POSTs each event as JSON to ``url``, through the ``outbox`` table (see module notes)."""

    def __init__(
        self,
        url: str,
        store_engine: Store,
        *,
        timeout: float = 5.0,
        max_attempts: int = 8,
        backoff: tuple[float, float] = (1.0, 60.0),
        max_outbox: int = 10_000,
        name: str | None = None,
        clock: Clock = utc_now,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"webhook URL {url!r}: must start with http:// or https://")
        if timeout <= 0 or max_attempts < 1 or max_outbox < 1:
            raise ConfigError("webhook: timeout, max_attempts and max_outbox must be positive")
        if not 0 <= backoff[0] <= backoff[1]:
            raise ConfigError(f"webhook: backoff {backoff} must be (first, cap), 0 <= first <= cap")
        self.url = url
        self.name = name or url
        """Key of this sink's rows in the outbox: the same name resumes the same queue."""
        self.label = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
        self.label += parts.path  # for logs: no credentials, no query string
        self.engine = engine_of(store_engine)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_outbox = max_outbox
        self.clock = clock
        self.delivered = 0
        self.failures = 0
        self.dropped = 0
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._wake = threading.Event()
        self._closing = False
        self._deadline = math.inf
        self._resume_parked()
        self._thread = threading.Thread(target=self._run, name=f"webhook {self.label}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"WebhookSink({self.label!r})"

    # ---- caller side ----------------------------------------------------------------------

    def send(self, event: dict[str, Any]) -> None:
        """Queue ``event`` durably in the outbox; the background thread delivers it.

        After ``close`` it still queues: the next sink started with this name delivers it.
        """
        payload = json.dumps(event, ensure_ascii=False)
        event_id = event.get("id")
        stamp = iso(self.clock())
        mine = outbox.c.sink == self.name
        with self.engine.begin() as conn:
            conn.execute(
                outbox.insert().values(
                    event_id=event_id if isinstance(event_id, int) else None,
                    sink=self.name,
                    payload=payload,
                    attempts=0,
                    next_attempt_at=stamp,
                    last_error=None,
                    created_at=stamp,
                )
            )
            count = int(conn.execute(sa.select(sa.func.count()).where(mine)).scalar() or 0)
            excess = count - self.max_outbox
            if excess > 0:
                oldest = sa.select(outbox.c.id).where(mine).order_by(outbox.c.id).limit(excess)
                conn.execute(outbox.delete().where(outbox.c.id.in_(oldest.scalar_subquery())))
        self._wake.set()
        if excess > 0:
            self.dropped += excess
            log.warning(
                "%s: outbox full (%d events): dropped the oldest %d (%d dropped so far)",
                self.label,
                self.max_outbox,
                excess,
                self.dropped,
            )

    def pending(self) -> int:
        """Rows of this sink still in the outbox (parked ones included)."""
        query = sa.select(sa.func.count()).where(outbox.c.sink == self.name)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered within ``timeout`` s; the rest stays in the outbox."""
        if not self._closing:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._wake.set()
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + 0.5)
        left = self.pending()
        if left:
            log.info("%s: %d events left in the outbox for the next start", self.label, left)

    # ---- delivery thread -----------------------------------------------------------------

    def _resume_parked(self) -> None:
        with self.engine.begin() as conn:
            resumed = conn.execute(
                outbox.update()
                .where(outbox.c.sink == self.name)
                .where(outbox.c.next_attempt_at.is_(None))
                .values(attempts=0, next_attempt_at=iso(self.clock()))
            ).rowcount
        if resumed:
            log.info("%s: retrying %d parked events", self.label, resumed)

    def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                row = self._head()
            except Exception:  # the thread must outlive a busy or vanished database
                log.exception("%s: cannot read the outbox", self.label)
                if self._closing:
                    return
                self._wake.wait(self.backoff[1])
                continue
            if row is None:
                if self._closing:
                    return
                self._wake.wait()
                continue
            wait = (datetime.fromisoformat(row.next_attempt_at) - self.clock()).total_seconds()
            if self._closing and time.monotonic() + max(wait, 0.0) >= self._deadline:
                return
            if wait > 0:
                self._wake.wait(wait)
                continue
            try:
                self._attempt(row)
            except Exception:
                log.exception("%s: cannot update the outbox", self.label)
                self._wake.wait(self.backoff[0])

    def _head(self) -> Any:
        query = (
            sa.select(outbox.c.id, outbox.c.payload, outbox.c.attempts, outbox.c.next_attempt_at)
            .where(outbox.c.sink == self.name)
            .where(outbox.c.next_attempt_at.is_not(None))
            .order_by(outbox.c.id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first()

    def _attempt(self, row: Any) -> None:
        error, answered = self._post(row.id, row.payload)
        with self.engine.begin() as conn:
            if error is None:
                conn.execute(outbox.delete().where(outbox.c.id == row.id))
                self.delivered += 1
                return
            self.failures += 1
            attempts = row.attempts + 1
            if answered and attempts >= self.max_attempts:
                next_at = None
                log.error(
                    "%s: event row %d refused %d times (%s); parked in the outbox",
                    self.label,
                    row.id,
                    attempts,
                    error,
                )
            else:
                delay = min(self.backoff[1], self.backoff[0] * 2 ** (attempts - 1))
                next_at = iso(self.clock() + timedelta(seconds=delay))
                log.warning("%s: %s; retry %d in %.2f s", self.label, error, attempts, delay)
            conn.execute(
                outbox.update()
                .where(outbox.c.id == row.id)
                .values(attempts=attempts, next_attempt_at=next_at, last_error=error)
            )

    def _post(self, row_id: int, payload: str) -> tuple[str | None, bool]:
        """(None, True) when delivered, else (the error, whether the server answered)."""
        request = urllib.request.Request(
            self.url,
            data=payload.encode("utf-8"),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "faceledger",
                "Idempotency-Key": str(row_id),
            },
        )
        timeout = self.timeout
        if self._closing:
            timeout = max(0.1, min(timeout, self._deadline - time.monotonic()))
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            return f"HTTP {exc.code} {exc.reason}", True
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return f"unreachable ({reason})", False
        return None, True


class Dispatcher:
    """Hands each event to every sink; one sink's failure is logged and counted, never raised."""

    def __init__(self, sinks: Iterable[Sink]) -> None:
        self.sinks = list(sinks)
        self.errors: Counter[str] = Counter()
        """Failures per sink (by its repr)."""

    def send(self, event: dict[str, Any]) -> None:
        for sink in self.sinks:
            try:
                sink.send(event)
            except Exception:  # isolation is this class's purpose
                self.errors[repr(sink)] += 1
                log.exception("event sink %r failed; the other sinks go on", sink)

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                self.errors[repr(sink)] += 1
                log.exception("event sink %r failed to close", sink)
