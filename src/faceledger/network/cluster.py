"""Nodes across machines: camera leases and the event stream over NATS JetStream.

:class:`LeaseClaims` is a node's :class:`~faceledger.network.node.Claims` when it runs with
``--nats``: it runs only the cameras it holds a lease on. Its
:class:`~faceledger.network.nats.LeaseKeeper` takes free cameras (its fair share of those
not paused), renews them by compare-and-set, and gives up a lease it could not renew by
its local deadline, before another node may take it over; the node stops that camera at
its next look (every 50 ms). :class:`EventStreamSink` publishes every decided event on the
JetStream stream for sinks and live views elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from faceledger.gallery.cameras import Camera
from faceledger.network.nats import EventStream, LeaseKeeper, Leases


class LeaseClaims:
    """The cameras this node holds a lease on (see the module notes)."""

    def __init__(
        self,
        leases: Leases,
        node: str,
        *,
        max_cameras: int | None = None,
        only: frozenset[str] | None = None,
    ) -> None:
        self.only = only
        self.changed = threading.Event()
        """Set when a lease is gained or lost: the node looks at its cameras at once."""
        self._lock = threading.Lock()
        self._wanted: list[str] = []
        self._held: set[str] = set()
        self.keeper = LeaseKeeper(
            leases, node, wanted=self._wanted_now, max_held=max_cameras,
            on_gained=self._gained, on_lost=self._lost,
        )  # fmt: skip

    def allowed(self, cameras: Sequence[Camera]) -> list[Camera]:
        wanted = [c for c in cameras if not c.paused and (self.only is None or c.name in self.only)]
        with self._lock:
            self._wanted = [c.name for c in wanted]
            held = set(self._held)
        return [c for c in wanted if c.name in held]

    def close(self) -> None:
        """Give every lease up at once (a drained node's cameras move on without waiting)."""
        self.keeper.stop(release=True)

    def _wanted_now(self) -> list[str]:
        with self._lock:
            return list(self._wanted)

    def _gained(self, camera: str) -> None:
        with self._lock:
            self._held.add(camera)
        self.changed.set()

    def _lost(self, camera: str) -> None:
        with self._lock:
            self._held.discard(camera)
        self.changed.set()


class EventStreamSink:
    """Publishes each event on the JetStream event stream (subject per camera)."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.published = 0

    def send(self, event: dict[str, Any]) -> None:
        self.stream.publish(event)
        self.published += 1

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"EventStreamSink({self.stream.prefix!r})"
