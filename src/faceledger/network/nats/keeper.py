"""The lease keeper: a node's thread that takes, renews and gives up its camera leases."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from faceledger.errors import (
    ConfigError,
    FaceledgerError,
)
from faceledger.network.nats.leases import Lease, Leases
from faceledger.network.nats.link import (
    _PATIENCE,
    DEFAULT_TIMEOUT_S,
    _check_seconds,
    _now,
    encode_key,
)

log = logging.getLogger(__name__)

# -- the keeper ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KeeperEvent:
    """One change of what a keeper holds. ``gained`` is stamped before ``on_gained`` runs;
    ``lost`` and ``released`` after ``on_lost`` returned (and, for ``released``, before the
    lease is deleted), so a camera's hold intervals of two keepers must never overlap."""

    kind: str
    """``gained``, ``lost`` (renewal failed, deadline passed, stopped without release) or
    ``released`` (no longer wanted, or stopped with release)."""
    camera: str
    node: str
    monotonic: float
    wall: datetime
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class _Held:
    lease: Lease
    deadline: float
    """Monotonic time after which the lease must be taken as lost: the start of its last
    successful take or renewal + ttl - ttl/5."""


class LeaseKeeper:
    """A daemon thread that takes, renews and gives up ``node``'s camera leases.

    Every ``renew_every`` seconds (default ttl/3) it renews each held lease (a failed
    renewal calls ``on_lost`` at once), drops cameras no longer in ``wanted()`` (``on_lost``,
    then release), and takes free wanted cameras up to its fair share and ``max_held``
    (``on_gained``). A lease whose renewal the server has not confirmed by its local
    deadline is lost (``on_lost``) even while the server cannot be reached: no request
    waits beyond the earliest deadline. Callbacks run on the keeper's thread (and
    ``stop``'s), one at a time, and must return at once (start or stop the camera's work on
    another thread): a slow callback delays other leases' renewals and deadlines (one
    taking over ttl/10 is logged). An exception in one is logged, never fatal.
    """

    def __init__(
        self,
        leases: Leases,
        node: str,
        *,
        wanted: Callable[[], Sequence[str]],
        max_held: int | None,
        on_gained: Callable[[str], None],
        on_lost: Callable[[str], None],
        renew_every: float | None = None,
    ) -> None:
        encode_key(node)
        if max_held is not None and (not isinstance(max_held, int) or max_held < 0):
            raise ConfigError(f"max_held must be None or a count >= 0, not {max_held!r}")
        self.leases = leases
        self.node = node
        self.ttl = leases.ttl
        self.margin = leases.ttl / 5
        every = leases.ttl / 3 if renew_every is None else renew_every
        self.renew_every = _check_seconds(every, "renew_every")
        if self.renew_every >= self.ttl - self.margin:
            raise ConfigError(
                f"renew_every ({self.renew_every:g} s) must be below ttl - ttl/5 "
                f"({self.ttl - self.margin:g} s), or every lease would be lost between renewals"
            )
        self.request_timeout = min(DEFAULT_TIMEOUT_S, max(0.2, self.renew_every / 2))
        self.log: list[KeeperEvent] = []
        self._wanted = wanted
        self._max_held = max_held
        self._on_gained = on_gained
        self._on_lost = on_lost
        self._held: dict[str, _Held] = {}
        self._free_streak: dict[str, int] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"leases-{node}", daemon=True)
        self._thread.start()

    # -- what it offers ------------------------------------------------------------------------

    def held(self) -> list[str]:
        """The cameras held now, sorted."""
        with self._lock:
            return sorted(self._held)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, release: bool = True) -> None:
        """Stop the thread and give up every lease: ``on_lost`` for each, then (``release``)
        delete it and this node's presence at once, so others may take over in their next
        tick; without ``release`` they expire after ttl. Idempotent."""
        self._stopping.set()
        self._thread.join(self.renew_every + self.request_timeout * (len(self._held) + 4))
        locked = self._lock.acquire(timeout=self.ttl)
        if not locked:
            log.error("the lease keeper of %s did not finish its tick: draining anyway", self.node)
        try:
            if self._stopped:
                return
            self._stopped = True
            for camera in sorted(self._held):
                self._give_up(camera, release=release, reason="the keeper stopped")
            if release:
                self._quietly(lambda: self.leases.withdraw(self.node, timeout=self.ttl / 5))
        finally:
            if locked:
                self._lock.release()

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        self._quietly(lambda: self.leases.announce(self.node, timeout=self.request_timeout))
        settle = self.renew_every * (1.0 + random.uniform(0.0, 0.25))
        if self._stopping.wait(settle):
            return
        next_tick = time.monotonic()
        while not self._stopping.is_set():
            try:
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.renew_every
                    self._tick()
                else:
                    self._enforce_deadlines()
            except Exception:  # a bug must not stop the deadlines: go on, loudly
                log.exception("the lease keeper of %s failed in a tick", self.node)
            wake = min(next_tick, self._earliest_deadline())
            self._stopping.wait(max(0.0, wake - time.monotonic()))

    def _tick(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._quietly(lambda: self.leases.announce(self.node, timeout=self._budget()))
            self._renew_all()
            wanted = self._wanted_now()
            if wanted is None:
                return
            self._drop_unwanted(wanted)
            self._take_free(wanted)
            self._enforce_deadlines()

    def _earliest_deadline(self) -> float:
        with self._lock:
            return min((held.deadline for held in self._held.values()), default=math.inf)

    def _enforce_deadlines(self) -> None:
        with self._lock:
            now = time.monotonic()
            for camera, held in list(self._held.items()):
                if now >= held.deadline:
                    self._lose(camera, "its local deadline passed without a confirmed renewal")

    def _budget(self) -> float:
        """The timeout for the next request: lose what is past its deadline first, then
        never wait (much) beyond the earliest deadline left, so no request delays a loss."""
        self._enforce_deadlines()
        remaining = self._earliest_deadline() - time.monotonic()
        return max(0.02, min(self.request_timeout, remaining))

    def _renew_all(self) -> None:
        for camera in list(self._held):
            if self._stopping.is_set():
                return
            budget = self._budget()
            held = self._held.get(camera)
            if held is None:
                continue  # its deadline passed
            started = time.monotonic()
            try:
                lease = self.leases.renew(held.lease, timeout=budget)
            except FaceledgerError as exc:
                log.debug("renewing camera %r failed: %s", camera, exc)
                continue  # the deadline decides
            if lease is None:
                self._lose(camera, "taken over, or its revision moved")
            else:
                self._held[camera] = _Held(lease, started + self.ttl - self.margin)

    def _wanted_now(self) -> list[str] | None:
        try:
            return list(dict.fromkeys(self._wanted()))
        except Exception:
            log.exception("the wanted() of the lease keeper of %s failed", self.node)
            return None

    def _drop_unwanted(self, wanted: Sequence[str]) -> None:
        keep = set(wanted)
        for camera in [camera for camera in self._held if camera not in keep]:
            self._give_up(camera, release=True, reason="no longer wanted")

    def _take_free(self, wanted: Sequence[str]) -> None:
        try:
            snapshot = self.leases.snapshot(timeout=self._budget())
        except FaceledgerError as exc:
            log.debug("the lease keeper of %s cannot read the bucket: %s", self.node, exc)
            return
        free = [c for c in wanted if c not in self._held and c not in snapshot.holders]
        self._free_streak = {c: self._free_streak.get(c, 0) + 1 for c in free}
        for camera in self._choose(free, len(wanted), len(set(snapshot.nodes) | {self.node})):
            if self._stopping.is_set():
                return
            self._try_take(camera)

    def _choose(self, free: list[str], wanted: int, nodes: int) -> list[str]:
        """Free cameras to take now: in random order, up to the fair share, then those free
        for ``_PATIENCE`` ticks; never beyond ``max_held``."""
        room = len(free) if self._max_held is None else self._max_held - len(self._held)
        if room <= 0 or not free:
            return []
        random.shuffle(free)
        share = math.ceil(wanted / max(1, nodes))
        quota = max(0, min(room, share - len(self._held)))
        chosen = free[:quota]
        patient = [c for c in free[quota:] if self._free_streak.get(c, 0) >= _PATIENCE]
        return (chosen + patient)[:room]

    def _try_take(self, camera: str) -> None:
        started = time.monotonic()
        try:
            lease = self.leases.take(camera, self.node, timeout=self._budget())
        except FaceledgerError as exc:
            log.debug("taking camera %r failed: %s", camera, exc)
            return
        if lease is None:
            return
        self._held[camera] = _Held(lease, started + self.ttl - self.margin)
        self._free_streak.pop(camera, None)
        self._record("gained", camera)
        try:
            self._timed(self._on_gained, camera)
        except Exception:
            log.exception("on_gained(%r) failed: giving the camera up", camera)
            self._give_up(camera, release=True, reason="on_gained failed")

    # -- giving up -------------------------------------------------------------------------

    def _lose(self, camera: str, reason: str) -> None:
        held = self._held.pop(camera, None)
        if held is None:
            return
        self._call_lost(camera)
        self._record("lost", camera, reason)
        log.warning("node %s lost camera %r: %s", self.node, camera, reason)

    def _give_up(self, camera: str, *, release: bool, reason: str) -> None:
        held = self._held.pop(camera, None)
        if held is None:
            return
        self._call_lost(camera)
        self._record("released" if release else "lost", camera, reason)
        if release:
            lease = held.lease
            self._quietly(lambda: self.leases.release(lease, timeout=self._budget()))

    def _call_lost(self, camera: str) -> None:
        try:
            self._timed(self._on_lost, camera)
        except Exception:
            log.exception("on_lost(%r) failed", camera)

    def _timed(self, callback: Callable[[str], None], camera: str) -> None:
        started = time.monotonic()
        try:
            callback(camera)
        finally:
            took = time.monotonic() - started
            if took > self.margin / 2:
                log.warning(
                    "a lease callback for camera %r took %.2f s: callbacks must return at "
                    "once (hand the work to another thread), or other leases' deadlines slip",
                    camera,
                    took,
                )

    def _record(self, kind: str, camera: str, reason: str = "") -> None:
        self.log.append(KeeperEvent(kind, camera, self.node, time.monotonic(), _now(), reason))

    def _quietly(self, action: Callable[[], object]) -> None:
        try:
            action()
        except FaceledgerError as exc:
            log.debug("the lease keeper of %s: %s", self.node, exc)
