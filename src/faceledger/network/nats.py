"""Coordination of camera nodes over NATS JetStream, for threaded (not asyncio) code.

::

    link = NatsLink("nats://10.0.0.5:4222", name="node-a")     # one event loop thread
    leases = Leases(link, ttl=10)                                # KV bucket of camera leases
    keeper = LeaseKeeper(leases, "node-a", wanted=lambda: cameras, max_held=8,
                         on_gained=start_camera, on_lost=stop_camera)
    jobs = JobQueue(link)                                        # archive scans, work queue
    events = EventStream(link)                                   # recognition events
    ...
    keeper.stop()                                                # SIGTERM: release at once
    link.close()

**NatsLink** runs one asyncio loop on a daemon thread; ``call`` runs a coroutine there and
waits, at most ``timeout`` seconds, for its result. Every wait in this module is bounded;
a server that cannot be reached is a ``StorageBusyError`` (try again) naming the URL
without its credentials; a server that refuses a setting is a ``ConfigError``.

**Leases** are keys of a JetStream key-value bucket, one per camera, whose value is JSON
``{"node", "since", "renewed", "expires", "token"}``. They are taken and renewed only by
compare-and-set on the key's revision, so two nodes can never both believe a take or a
renewal succeeded. A lease is free when its key is missing, deleted or purged, **or** when
its ``expires`` has passed by the reader's clock (it is then taken over by CAS on the
revision of the stale value). The bucket's own ``max_age`` (= ttl) also sweeps keys that
were not renewed, as a second line; takeover does not wait for that sweep. Nodes' clocks
must agree to well within ttl/5 (NTP).

Camera names become keys reversibly: ``[-_a-zA-Z0-9]`` stay as they are, every other
character is written as ``=XX`` for each byte of its UTF-8 form (``front door/2`` ->
``front=20door=2F2``). Encoded keys never hold a ``.``; the bucket's other keys, the
keepers' presence records, are ``node.<encoded node name>``.

**LeaseKeeper** holds a node's leases. Its safety rule: a lease is given up (``on_lost``)
once ``ttl - ttl/5`` has passed on the monotonic clock since the request of its last
successful renewal started, whether or not the server answers, so a node cut off from
the server has stopped its camera before any other node may take it over.

Spreading: every keeper announces itself (a presence key, renewed each tick) and waits one
tick plus a random quarter of one before its first take, so nodes started together see
each other. Each tick it takes free wanted cameras (in random order) up to its fair share,
``ceil(len(wanted) / live nodes)``; a camera that stayed free for ``_PATIENCE`` ticks in a
row is taken beyond the share (a node capped by ``max_held``, or not wanting it, leaves it
to others). Held cameras are never given up to rebalance, so a node that joins late gets
cameras only as others lose or release them.

**JobQueue** is a stream with work-queue retention (a job goes to one worker and is removed
when acked; unacked jobs come back after ``ack_wait``, at most ``max_deliver`` times, after
which they stay in the stream and count in ``pending()``). **EventStream** is a stream with
limits retention (``max_age``) over ``{prefix}.{camera}``. Both set ``Nats-Msg-Id`` from a
message's ``"id"``, so a re-sent job or event within the duplicate window is stored once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from faceledger.errors import (
    ConfigError,
    ConflictError,
    FaceledgerError,
    InputError,
    StorageBusyError,
    StorageError,
)

_NATS_MISSING = ""
try:
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext, api
    from nats.js.kv import KeyValue
except ImportError as _exc:  # pragma: no cover - the optional client is not installed
    _NATS_MISSING = f"nats-py is not installed ({_exc}): pip install 'nats-py>=2.6'"

__all__ = [
    "EventStream",
    "Job",
    "JobQueue",
    "JobWorker",
    "KeeperEvent",
    "Lease",
    "LeaseInfo",
    "LeaseKeeper",
    "LeaseSnapshot",
    "Leases",
    "NatsLink",
    "decode_key",
    "encode_key",
    "redact_url",
    "subject_token",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_TIMEOUT_S = 5.0
"""The limit on one request (a publish, a get, a stream's creation) unless told."""

_DRAIN_TIMEOUT_S = 2.0
_SHUTDOWN_TIMEOUT_S = 3.0
_GRACE_S = 1.0
"""Added to a server-side wait (a fetch, a publish's ack) for the call that carries it."""

_PATIENCE = 3
"""Ticks a camera must stay free before a keeper at its fair share takes it anyway."""

_FETCH_BATCH = 256
_MAX_KEY_LENGTH = 1024
_WRONG_LAST_SEQUENCE = (10071, 10164)
_STREAM_IN_USE = 10058

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
"""Bucket, stream and consumer names: no dots, wildcards or spaces."""
_SUBJECT_RE = re.compile(r"^[^\s.*>]+(\.[^\s.*>]+)*$")
_PLAIN_KEY_CHAR = re.compile(r"[-_a-zA-Z0-9]")
_ENCODED_KEY = re.compile(r"^(?:[-_a-zA-Z0-9]|=[0-9A-F]{2})+$")
_UNSAFE_TOKEN_CHAR = re.compile(r"[\s.*>\x00-\x1f\x7f]")
_PRESENCE = "node."
_KV_OP = "KV-Operation"


# -- small helpers ---------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL without user, password or token: ``nats://u:p@host:4222`` -> ``nats://host:4222``."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "<an unparsable NATS URL>"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def encode_key(name: str) -> str:
    """A KV key for a camera (or node) name, reversibly: ``[-_a-zA-Z0-9]`` kept, anything
    else ``=XX`` per UTF-8 byte. ConfigError for an empty or overlong name."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a camera or node name must be a non-empty string, not {name!r}")
    out: list[str] = []
    for char in name:
        if _PLAIN_KEY_CHAR.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"={byte:02X}" for byte in char.encode("utf-8"))
    key = "".join(out)
    if len(key) > _MAX_KEY_LENGTH:
        raise ConfigError(f"the name {name[:40]!r}... is too long for a NATS key")
    return key


def decode_key(key: str) -> str | None:
    """The name ``encode_key`` made ``key`` from; None when ``key`` is not such a key."""
    if not _ENCODED_KEY.fullmatch(key):
        return None
    data = bytearray()
    index = 0
    while index < len(key):
        if key[index] == "=":
            data.append(int(key[index + 1 : index + 3], 16))
            index += 3
        else:
            data.append(ord(key[index]))
            index += 1
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def subject_token(name: str) -> str:
    """``name`` as one subject token: ``.``, ``*``, ``>``, spaces and control characters
    become ``_`` (not reversible: the message itself carries the name)."""
    return _UNSAFE_TOKEN_CHAR.sub("_", name) or "_"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _parse_time(text: object) -> datetime:
    if not isinstance(text, str):
        raise TypeError(f"not a time: {text!r}")
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(f"{what} {name!r} must be letters, digits, '-' or '_' only")
    return name


def _check_subject(subject: str, what: str) -> str:
    if not isinstance(subject, str) or not _SUBJECT_RE.fullmatch(subject):
        raise ConfigError(
            f"{what} {subject!r} must be dot-separated tokens without spaces or wildcards"
        )
    return subject


def _check_seconds(value: float, what: str, *, minimum: float = 0.0) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= minimum:
        raise ConfigError(f"{what} must be a number of seconds above {minimum:g}, not {value!r}")
    return float(value)


def _dump(document: dict[str, Any], what: str) -> bytes:
    if not isinstance(document, dict):
        raise InputError(what, f"must be a JSON object (a dict), not {type(document).__name__}")
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InputError(what, f"cannot be written as JSON: {exc}") from exc


def _load(data: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(data)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _msg_id(document: dict[str, Any]) -> dict[str, str] | None:
    ident = document.get("id")
    if ident is None or ident == "":
        return None
    return {"Nats-Msg-Id": str(ident)}


# -- the link --------------------------------------------------------------------------------


class NatsLink:
    """One NATS connection, served by an asyncio loop on a daemon thread, for threaded code.

    The client reconnects for ever (every 0.5 s) after a connection is lost; requests made
    meanwhile fail within their timeouts. StorageBusyError, naming the URL without its
    credentials, when the server cannot be reached within ``connect_timeout``.
    """

    def __init__(self, url: str, *, name: str, connect_timeout: float = 5.0) -> None:
        if _NATS_MISSING:
            raise ConfigError(_NATS_MISSING)
        if not isinstance(url, str) or not url.strip():
            raise ConfigError("the NATS URL is empty")
        self.url = url
        self.where = redact_url(url)
        self.name = name
        self.connect_timeout = _check_seconds(connect_timeout, "connect_timeout")
        self._last_error = ""
        self._closed = False
        self._closing = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=f"nats-{name}", daemon=True)
        self._thread.start()
        self._nc = Client()
        self._open()
        self._js = self._nc.jetstream(timeout=DEFAULT_TIMEOUT_S)

    def _open(self) -> None:
        try:
            self.call(self._connect(), self.connect_timeout, what="connecting")
        except StorageBusyError:
            self._shutdown()
            reason = self._last_error or "no answer"
            raise StorageBusyError(
                f"cannot reach the NATS server at {self.where} within "
                f"{self.connect_timeout:g} s ({reason})"
            ) from None
        except BaseException:
            self._shutdown()
            raise

    # -- what it offers ------------------------------------------------------------------------

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context (for coroutines handed to ``call``)."""
        return self._js

    @property
    def connected(self) -> bool:
        return not self._closed and self._nc.is_connected

    def check_connected(self, what: str) -> None:
        """StorageBusyError unless connected now (so nothing is buffered for later)."""
        if not self.connected:
            raise StorageBusyError(
                f"not connected to the NATS server at {self.where} ({what}); "
                f"last error: {self._last_error or 'none'}"
            )

    def call(
        self, coro: Coroutine[Any, Any, _T], timeout: float, *, what: str = "a NATS request"
    ) -> _T:
        """Run ``coro`` on the link's loop and wait at most ``timeout`` s for its result.

        A timeout cancels it and raises StorageBusyError saying what was being done; an
        error of the client or the server becomes StorageBusyError (unreachable, busy) or
        StorageError (refused). Must not be called from the loop's own thread.
        """
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("NatsLink.call from its own event loop would deadlock: await it")
        if self._closed or not self._thread.is_alive():
            coro.close()
            raise StorageError(f"the link to NATS at {self.where} is closed ({what})")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            if future.cancel():
                raise StorageBusyError(
                    f"NATS at {self.where}: {what} did not finish within {timeout:g} s"
                ) from None
            if not future.done() or future.cancelled():
                raise StorageBusyError(f"NATS at {self.where}: {what} was cancelled") from None
            if future.exception() is None:
                return future.result()
            raise self._translate(exc, what) from exc
        except concurrent.futures.CancelledError:
            raise StorageBusyError(f"NATS at {self.where}: {what} was cancelled") from None
        except FaceledgerError:
            raise
        except Exception as exc:
            raise self._translate(exc, what) from exc

    def close(self) -> None:
        """Drain the connection (bounded), close it and stop the loop. Idempotent."""
        if self._closed:
            return
        self._closing = True
        with contextlib.suppress(FaceledgerError, RuntimeError):
            self.call(self._drain(), _DRAIN_TIMEOUT_S + _GRACE_S, what="draining")
        self._closed = True
        self._shutdown()

    def __enter__(self) -> NatsLink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- inside ----------------------------------------------------------------------------

    def _translate(self, exc: BaseException, what: str) -> FaceledgerError:
        where = f"NATS at {self.where}: {what}"
        if isinstance(exc, nats.errors.MsgAlreadyAckdError):
            return ConflictError(f"{where}: the message was already acknowledged")
        if isinstance(exc, nats.js.errors.ServiceUnavailableError):
            return StorageBusyError(f"{where}: JetStream is not available ({exc.description})")
        if isinstance(exc, nats.js.errors.APIError):
            return StorageError(
                f"{where}: the server refused: {exc.description} (code {exc.err_code})"
            )
        if isinstance(exc, nats.js.errors.NoStreamResponseError):
            return StorageError(f"{where}: no JetStream stream takes this subject")
        if isinstance(exc, (nats.errors.Error, asyncio.TimeoutError, OSError)):
            text = str(exc) or type(exc).__name__
            return StorageBusyError(f"{where} failed: {text}")
        return StorageError(f"{where} failed: {type(exc).__name__}: {exc}")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _connect(self) -> None:
        await self._nc.connect(
            servers=[self.url],
            name=self.name,
            connect_timeout=self.connect_timeout,  # type: ignore[arg-type]  # a float works
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]
            drain_timeout=_DRAIN_TIMEOUT_S,  # type: ignore[arg-type]
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = str(exc) or type(exc).__name__
        log.debug("NATS at %s: %s", self.where, self._last_error)

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("disconnected from the NATS server at %s", self.where)

    async def _on_reconnected(self) -> None:
        log.warning("reconnected to the NATS server at %s", self.where)

    async def _drain(self) -> None:
        try:
            if self._nc.is_connected:
                await self._nc.drain()
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
            log.debug("draining the NATS connection to %s: %s", self.where, exc)
        finally:
            if not self._nc.is_closed:
                await self._nc.close()

    async def _finish(self) -> None:
        nc: Client | None = getattr(self, "_nc", None)
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), _SHUTDOWN_TIMEOUT_S / 2)
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_SHUTDOWN_TIMEOUT_S / 2)

    def _shutdown(self) -> None:
        self._closing = True
        self._closed = True
        if self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._finish(), self._loop)
            with contextlib.suppress(Exception):
                future.result(_SHUTDOWN_TIMEOUT_S)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_SHUTDOWN_TIMEOUT_S)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()


# -- reading a stream through a throw-away consumer --------------------------------------------


async def _pull_all(
    js: JetStreamContext,
    stream: str,
    config: api.ConsumerConfig,
    *,
    limit: int,
    timeout: float,
) -> list[Msg]:
    """Up to ``limit`` messages through an ephemeral pull consumer (no acks), from its start
    until it has nothing more pending or ``timeout`` has passed; the consumer is deleted."""
    config = dataclasses.replace(
        config, ack_policy=api.AckPolicy.NONE, inactive_threshold=max(10.0, 2 * timeout)
    )
    info = await js.add_consumer(stream, config)
    name = info.name
    out: list[Msg] = []
    try:
        if not info.num_pending:
            return out
        sub = await js.pull_subscribe_bind(consumer=name, stream=stream)
        try:
            await _fetch_until_done(sub, out, limit, timeout)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, name)
    return out


async def _fetch_until_done(
    sub: JetStreamContext.PullSubscription, out: list[Msg], limit: int, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while len(out) < limit:
        remaining = deadline - time.monotonic()
        if remaining < 0.01:
            return
        try:
            batch = await sub.fetch(min(_FETCH_BATCH, limit - len(out)), timeout=remaining)
        except asyncio.TimeoutError:  # nats.errors.TimeoutError is one
            return
        for msg in batch:
            out.append(msg)
            if msg.metadata.num_pending == 0 or len(out) >= limit:
                return


# -- leases ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Lease:
    """A lease this process holds: renew or release it with its ``revision``."""

    camera: str
    node: str
    revision: int
    since: datetime
    expires: datetime
    token: str = dataclasses.field(default="", repr=False)
    """Random per take: lets ``release`` delete this take's lease even when a renewal whose
    answer was lost moved its revision (``renew`` itself is strict CAS)."""


@dataclasses.dataclass(frozen=True)
class LeaseInfo:
    """What the bucket says about a camera's lease (``released``: a delete, in history)."""

    camera: str
    node: str
    revision: int
    since: datetime
    renewed: datetime
    expires: datetime
    released: bool = False
    token: str = dataclasses.field(default="", repr=False)

    def expired(self, now: datetime | None = None) -> bool:
        return self.released or (now or _now()) >= self.expires


@dataclasses.dataclass(frozen=True)
class LeaseSnapshot:
    """Every live lease (by camera) and every live keeper (node -> its presence's expiry)."""

    holders: dict[str, LeaseInfo]
    nodes: dict[str, datetime]


def _lease_info(camera: str, revision: int, data: bytes | None) -> LeaseInfo | None:
    """The lease a value describes; None for a value that is not one of ours (free)."""
    document = _load(data or b"")
    if document is None:
        return None
    try:
        return LeaseInfo(
            camera=camera,
            node=str(document["node"]),
            revision=revision,
            since=_parse_time(document["since"]),
            renewed=_parse_time(document["renewed"]),
            expires=_parse_time(document["expires"]),
            token=str(document.get("token", "")),
        )
    except (KeyError, TypeError, ValueError):
        return None


class Leases:
    """Camera leases in the JetStream KV bucket ``bucket`` (created with history 64 and
    ``max_age`` = ``ttl``; ConfigError when it exists with another ttl)."""

    def __init__(
        self,
        link: NatsLink,
        *,
        bucket: str = "faceledger_cameras",
        ttl: float = 10.0,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.link = link
        self.bucket = _check_name(bucket, "the lease bucket")
        self.ttl = _check_seconds(ttl, "the lease ttl")
        if self.ttl < 1.0:
            raise ConfigError(f"the lease ttl must be at least 1 s, not {ttl!r}")
        self.timeout = _check_seconds(timeout, "the lease request timeout")
        self._stream = f"KV_{bucket}"
        self._prefix = f"$KV.{bucket}."
        self._kv: KeyValue = link.call(
            self._open(), self.timeout, what=f"opening the KV bucket {bucket}"
        )

    # -- the lease of one camera ---------------------------------------------------------------

    def take(self, camera: str, node: str, *, timeout: float | None = None) -> Lease | None:
        """The camera's lease for ``node`` if it is free (missing, deleted or expired), by
        compare-and-set; None when someone holds it or won the race."""
        key = encode_key(camera)
        encode_key(node)
        return self.link.call(
            self._take(key, camera, node),
            timeout or self.timeout,
            what=f"taking the lease of camera {camera!r}",
        )

    def renew(self, lease: Lease, *, timeout: float | None = None) -> Lease | None:
        """The lease renewed for another ttl, by CAS on its revision; None when it was lost
        (taken over, or its revision moved)."""
        return self.link.call(
            self._renew(lease),
            timeout or self.timeout,
            what=f"renewing the lease of camera {lease.camera!r}",
        )

    def release(self, lease: Lease, *, timeout: float | None = None) -> None:
        """Delete the lease by CAS on its revision; never deletes someone else's."""
        self.link.call(
            self._release(lease),
            timeout or self.timeout,
            what=f"releasing the lease of camera {lease.camera!r}",
        )

    def holder(self, camera: str, *, timeout: float | None = None) -> LeaseInfo | None:
        """The camera's live lease; None when it is free (or expired)."""
        key = encode_key(camera)
        info = self.link.call(
            self._current(key, camera),
            timeout or self.timeout,
            what=f"reading the lease of camera {camera!r}",
        )
        if info is None or info.expired():
            return None
        return info

    def all(self, *, timeout: float | None = None) -> dict[str, LeaseInfo]:
        """Every live (held, not expired) lease, by camera."""
        return self.snapshot(timeout=timeout).holders

    def nodes(self, *, timeout: float | None = None) -> dict[str, datetime]:
        """Every live keeper (announced, not expired): node -> when its presence expires."""
        return self.snapshot(timeout=timeout).nodes

    def snapshot(self, *, timeout: float | None = None) -> LeaseSnapshot:
        """The live leases and nodes, read in one pass over the bucket."""
        limit = timeout or self.timeout
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
            filter_subject=f"{self._prefix}>",
        )
        messages = self.link.call(
            _pull_all(self.link.js, self._stream, config, limit=1_000_000, timeout=limit * 0.8),
            limit,
            what=f"reading the KV bucket {self.bucket}",
        )
        return self._survey(messages)

    def history(self, camera: str, *, timeout: float | None = None) -> list[LeaseInfo]:
        """The camera's lease values and releases still in the bucket, oldest first (at most
        64, and none older than the bucket's max_age, = ttl)."""
        key = encode_key(camera)
        limit = timeout or self.timeout
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.ALL, filter_subject=f"{self._prefix}{key}"
        )
        messages = self.link.call(
            _pull_all(self.link.js, self._stream, config, limit=1000, timeout=limit * 0.8),
            limit,
            what=f"reading the lease history of camera {camera!r}",
        )
        return self._history(camera, messages)

    # -- presence --------------------------------------------------------------------------

    def announce(self, node: str, *, timeout: float | None = None) -> None:
        """Say that ``node``'s keeper is alive, for a ttl (the keeper does it every tick)."""
        key = _PRESENCE + encode_key(node)
        now = _now()
        value = {"node": node, "renewed": _iso(now), "expires": _iso(now + self._ttl_delta)}
        self.link.call(
            self._put(key, _dump(value, "presence")),
            timeout or self.timeout,
            what=f"announcing node {node!r}",
        )

    def withdraw(self, node: str, *, timeout: float | None = None) -> None:
        """Remove ``node``'s presence at once (a keeper that stops)."""
        key = _PRESENCE + encode_key(node)
        self.link.call(
            self._delete(key), timeout or self.timeout, what=f"withdrawing node {node!r}"
        )

    # -- inside ----------------------------------------------------------------------------

    @property
    def _ttl_delta(self) -> timedelta:
        return timedelta(seconds=self.ttl)

    def _value(self, node: str, since: datetime, renewed: datetime, token: str) -> bytes:
        document = {
            "node": node,
            "since": _iso(since),
            "renewed": _iso(renewed),
            "expires": _iso(renewed + self._ttl_delta),
            "token": token,
        }
        return _dump(document, "lease")

    async def _open(self) -> KeyValue:
        js = self.link.js
        config = api.KeyValueConfig(bucket=self.bucket, history=64, ttl=self.ttl)
        try:
            return await js.create_key_value(config)
        except nats.js.errors.APIError as exc:
            if exc.err_code != _STREAM_IN_USE:
                raise ConfigError(
                    f"NATS at {self.link.where} refused the KV bucket {self.bucket}: "
                    f"{exc.description}"
                ) from exc
        kv = await js.key_value(self.bucket)
        status = await kv.status()
        if status.ttl is None or abs(status.ttl - self.ttl) > 1e-3:
            raise ConfigError(
                f"the KV bucket {self.bucket} at {self.link.where} expires keys after "
                f"{status.ttl} s, but this node's lease ttl is {self.ttl:g} s: give every "
                f"node the same ttl (or another bucket)"
            )
        return kv

    async def _entry(self, key: str) -> tuple[int, bytes | None]:
        """(revision, value) of the key's last message; value None for a delete, purge or a
        key with no message (revision 0)."""
        try:
            entry = await self._kv.get(key)
        except nats.js.errors.KeyNotFoundError as exc:
            marker = exc.entry
            revision = marker.revision if marker is not None and marker.revision else 0
            return revision, None
        return entry.revision or 0, entry.value

    async def _current(self, key: str, camera: str) -> LeaseInfo | None:
        revision, value = await self._entry(key)
        if value is None:
            return None
        return _lease_info(camera, revision, value)

    async def _cas(self, key: str, value: bytes, last: int) -> int | None:
        """Write ``value`` if the key's last revision is ``last`` (0: no message); the new
        revision, or None when it moved."""
        try:
            return await self._kv.update(key, value, last=last)
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def _take(self, key: str, camera: str, node: str) -> Lease | None:
        self.link.check_connected(f"taking camera {camera!r}")
        now = _now()
        revision, value = await self._entry(key)
        if value is not None:
            info = _lease_info(camera, revision, value)
            if info is not None and not info.expired(now):
                return None
            if info is None:
                log.warning("lease of camera %r holds no lease value: taking it over", camera)
        token = uuid.uuid4().hex
        new_revision = await self._cas(key, self._value(node, now, now, token), revision)
        if new_revision is None:
            return None
        return Lease(camera, node, new_revision, now, now + self._ttl_delta, token)

    async def _ours_now(self, key: str, lease: Lease) -> int | None:
        """The key's revision when its value is still this very take of the lease (a
        renewal whose answer was lost moved the revision); None otherwise."""
        revision, value = await self._entry(key)
        info = _lease_info(lease.camera, revision, value) if value is not None else None
        if info is None or not lease.token or info.token != lease.token:
            return None
        return revision

    async def _renew(self, lease: Lease) -> Lease | None:
        self.link.check_connected(f"renewing camera {lease.camera!r}")
        key = encode_key(lease.camera)
        now = _now()
        value = self._value(lease.node, lease.since, now, lease.token)
        revision = await self._cas(key, value, lease.revision)
        if revision is None:
            return None
        return dataclasses.replace(lease, revision=revision, expires=now + self._ttl_delta)

    async def _delete_if(self, key: str, last: int) -> bool:
        try:
            await self._kv.delete(key, last=last)
        except nats.js.errors.APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                return False
            raise
        return True

    async def _release(self, lease: Lease) -> None:
        self.link.check_connected(f"releasing camera {lease.camera!r}")
        key = encode_key(lease.camera)
        if await self._delete_if(key, lease.revision):
            return
        last = await self._ours_now(key, lease)
        if last is not None:
            await self._delete_if(key, last)

    async def _put(self, key: str, value: bytes) -> None:
        self.link.check_connected("writing to the lease bucket")
        await self._kv.put(key, value)

    async def _delete(self, key: str) -> None:
        self.link.check_connected("deleting from the lease bucket")
        await self._kv.delete(key)

    def _survey(self, messages: Sequence[Msg]) -> LeaseSnapshot:
        now = _now()
        holders: dict[str, LeaseInfo] = {}
        nodes: dict[str, datetime] = {}
        for msg in messages:
            if msg.headers and msg.headers.get(_KV_OP):
                continue  # a delete or purge: free
            key = msg.subject[len(self._prefix) :]
            if key.startswith(_PRESENCE):
                self._add_node(nodes, msg.data, now)
                continue
            camera = decode_key(key)
            if camera is None:
                continue
            info = _lease_info(camera, msg.metadata.sequence.stream, msg.data)
            if info is not None and not info.expired(now):
                holders[camera] = info
        return LeaseSnapshot(holders=holders, nodes=nodes)

    @staticmethod
    def _add_node(nodes: dict[str, datetime], data: bytes, now: datetime) -> None:
        document = _load(data)
        if document is None:
            return
        try:
            node, expires = str(document["node"]), _parse_time(document["expires"])
        except (KeyError, TypeError, ValueError):
            return
        if expires > now:
            nodes[node] = expires

    @staticmethod
    def _history(camera: str, messages: Sequence[Msg]) -> list[LeaseInfo]:
        out: list[LeaseInfo] = []
        for msg in messages:
            revision = msg.metadata.sequence.stream
            if msg.headers and msg.headers.get(_KV_OP):
                at = msg.metadata.timestamp
                node = out[-1].node if out and not out[-1].released else ""
                out.append(LeaseInfo(camera, node, revision, at, at, at, released=True))
                continue
            info = _lease_info(camera, revision, msg.data)
            if info is not None:
                out.append(info)
        return out


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


# -- the job queue ---------------------------------------------------------------------------


class Job:
    """A job delivered to a worker: ``data``, ``deliveries`` (1 the first time), ``seq``;
    settle it once with ``ack``, ``nak`` or ``term`` (``in_progress`` any number of times)."""

    def __init__(self, link: NatsLink, msg: Msg, data: dict[str, Any], timeout: float) -> None:
        self._link = link
        self._msg = msg
        self._timeout = timeout
        self.data = data
        self.deliveries: int = msg.metadata.num_delivered or 1
        self.seq: int = msg.metadata.sequence.stream

    def __repr__(self) -> str:
        return f"Job(seq={self.seq}, deliveries={self.deliveries}, data={self.data!r})"

    def ack(self) -> None:
        """Done: the job is removed. Waits for the server to confirm."""
        self._settle(self._msg.ack_sync(timeout=self._timeout), "acknowledging")

    def nak(self, delay: float | None = None) -> None:
        """Not done: deliver it again (after ``delay`` seconds, or at once)."""
        self._settle(self._msg.nak(delay=delay), "refusing")

    def in_progress(self) -> None:
        """Still working on it: restart its ack_wait (while a long file is scanned)."""
        self._settle(self._msg.in_progress(), "extending")

    def term(self) -> None:
        """Never deliver it again (a job that cannot succeed)."""
        self._settle(self._msg.term(), "terminating")

    def _settle(self, coro: Coroutine[Any, Any, object], verb: str) -> None:
        self._link.call(coro, self._timeout + _GRACE_S, what=f"{verb} job seq {self.seq}")


class JobWorker:
    """A pull subscription to the queue's durable consumer; several share one durable."""

    def __init__(self, link: NatsLink, sub: JetStreamContext.PullSubscription, timeout: float):
        self._link = link
        self._sub = sub
        self._timeout = timeout

    def next(self, timeout: float) -> Job | None:
        """The next job, or None when none came within ``timeout`` seconds (StorageBusyError
        when not connected). A message that is not a JSON object is terminated (logged)."""
        wait = _check_seconds(timeout, "the wait for a job")
        return self._link.call(self._next(wait), wait + _GRACE_S, what="waiting for a job")

    def close(self) -> None:
        """Unsubscribe; jobs it held unacked come back to others after ack_wait."""
        with contextlib.suppress(FaceledgerError):
            self._link.call(self._sub.unsubscribe(), self._timeout, what="closing a worker")

    async def _next(self, timeout: float) -> Job | None:
        self._link.check_connected("waiting for a job")
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0.01:
            try:
                msgs = await self._sub.fetch(1, timeout=remaining)
            except asyncio.TimeoutError:  # nats.errors.TimeoutError is one
                return None
            msg = msgs[0]
            data = _load(msg.data)
            if data is not None:
                return Job(self._link, msg, data, self._timeout)
            log.warning("job seq %s is not a JSON object: terminated", msg.metadata.sequence)
            await msg.term()
        return None


async def _add_stream(link: NatsLink, config: api.StreamConfig, what: str) -> Any:
    """Create the stream ``config`` names; None when made (or made alike), else the info of
    the stream that exists already under that name, for the caller to check."""
    try:
        await link.js.add_stream(config)
        return None
    except nats.js.errors.APIError as exc:
        if exc.err_code != _STREAM_IN_USE:
            raise ConfigError(
                f"NATS at {link.where} refused the {what} {config.name}: {exc.description}"
            ) from exc
    return await link.js.stream_info(str(config.name))


class JobQueue:
    """Jobs in a JetStream stream with work-queue retention, taken by pull workers."""

    def __init__(
        self,
        link: NatsLink,
        *,
        stream: str = "FACELEDGER_JOBS",
        subject: str = "faceledger.jobs",
        ack_wait: float = 30.0,
        max_deliver: int = 5,
        duplicate_window: float = 120.0,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not isinstance(max_deliver, int) or max_deliver < 1:
            raise ConfigError(f"max_deliver must be a count >= 1, not {max_deliver!r}")
        self.link = link
        self.stream = _check_name(stream, "the job stream")
        self.subject = _check_subject(subject, "the job subject")
        self.ack_wait = _check_seconds(ack_wait, "ack_wait")
        self.max_deliver = max_deliver
        self.duplicate_window = _check_seconds(duplicate_window, "the duplicate window")
        self.timeout = _check_seconds(timeout, "the job request timeout")
        link.call(self._open(), self.timeout, what=f"opening the job stream {stream}")

    def submit(self, job: dict[str, Any], *, timeout: float | None = None) -> int:
        """Queue ``job`` (a JSON object); its stream sequence. A job with an ``"id"`` sent
        again within the duplicate window is stored once (the first one's sequence)."""
        payload = _dump(job, "job")
        wait = timeout or self.timeout
        ack = self.link.call(
            self.link.js.publish(
                self.subject, payload, timeout=wait, stream=self.stream, headers=_msg_id(job)
            ),
            wait + _GRACE_S,
            what=f"submitting a job to {self.stream}",
        )
        return ack.seq

    def worker(self, durable: str = "workers") -> JobWorker:
        """A worker on the durable pull consumer ``durable`` (created, or updated to this
        queue's ack_wait and max_deliver)."""
        _check_name(durable, "the consumer")
        sub = self.link.call(
            self._bind(durable), self.timeout, what=f"binding worker {durable} to {self.stream}"
        )
        return JobWorker(self.link, sub, self.timeout)

    def pending(self) -> int:
        """Jobs in the stream: not yet acked (including those past max_deliver)."""
        info = self.link.call(
            self.link.js.stream_info(self.stream), self.timeout, what=f"counting {self.stream}"
        )
        return int(info.state.messages)

    async def _open(self) -> None:
        config = api.StreamConfig(
            name=self.stream,
            subjects=[self.subject],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            duplicate_window=self.duplicate_window,
        )
        info = await _add_stream(self.link, config, "job stream")
        if info is None:
            return
        retention = info.config.retention
        if retention != api.RetentionPolicy.WORK_QUEUE or self.subject not in (
            info.config.subjects or []
        ):
            raise ConfigError(
                f"the stream {self.stream} at {self.link.where} exists with retention "
                f"{retention} over {info.config.subjects}: not a work queue over "
                f"{self.subject!r}"
            )

    async def _bind(self, durable: str) -> JetStreamContext.PullSubscription:
        js = self.link.js
        config = api.ConsumerConfig(
            durable_name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            filter_subject=self.subject,
        )
        try:
            await js.add_consumer(self.stream, config)
        except nats.js.errors.BadRequestError as exc:
            raise ConfigError(
                f"NATS at {self.link.where} refused the consumer {durable} on {self.stream}: "
                f"{exc.description}"
            ) from exc
        return await js.pull_subscribe_bind(consumer=durable, stream=self.stream)


# -- the event stream ------------------------------------------------------------------------


class EventStream:
    """Events in a JetStream stream with limits retention over ``{prefix}.>``."""

    def __init__(
        self,
        link: NatsLink,
        *,
        stream: str = "FACELEDGER_EVENTS",
        subject_prefix: str = "faceledger.events",
        max_age: float = 7 * 86400,
        duplicate_window: float = 120.0,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.link = link
        self.stream = _check_name(stream, "the event stream")
        self.prefix = _check_subject(subject_prefix, "the event subject prefix")
        self.max_age = _check_seconds(max_age, "the events' max_age")
        self.duplicate_window = min(
            _check_seconds(duplicate_window, "the duplicate window"), self.max_age
        )
        self.timeout = _check_seconds(timeout, "the event request timeout")
        link.call(self._open(), self.timeout, what=f"opening the event stream {stream}")

    def subject_for(self, camera: str) -> str:
        return f"{self.prefix}.{subject_token(camera)}"

    def publish(self, event: dict[str, Any], *, timeout: float | None = None) -> int:
        """Store ``event`` (a JSON object with a ``"camera"``) under ``{prefix}.{camera}``
        and wait for the server's ack; its stream sequence (an event re-sent with the same
        ``"id"`` within the duplicate window is stored once: the first one's sequence)."""
        payload = _dump(event, "event")
        camera = event.get("camera")
        if not isinstance(camera, str) or not camera:
            raise InputError("event", "has no 'camera' (a non-empty string) to file it under")
        wait = timeout or self.timeout
        ack = self.link.call(
            self.link.js.publish(
                self.subject_for(camera),
                payload,
                timeout=wait,
                stream=self.stream,
                headers=_msg_id(event),
            ),
            wait + _GRACE_S,
            what=f"publishing an event of camera {camera!r}",
        )
        return ack.seq

    def read(
        self, since_seq: int = 0, limit: int = 1000, timeout: float = 2.0
    ) -> list[tuple[int, dict[str, Any]]]:
        """Events with a sequence above ``since_seq``, oldest first, at most ``limit``:
        ``(seq, event)``. Stops at the end of the stream or after ``timeout`` seconds
        (returning what came); a message that is not a JSON object is skipped."""
        if not isinstance(since_seq, int) or since_seq < 0:
            raise ConfigError(f"since_seq must be a sequence >= 0, not {since_seq!r}")
        if not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"limit must be a count >= 1, not {limit!r}")
        wait = _check_seconds(timeout, "the read timeout")
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=since_seq + 1
        )
        messages = self.link.call(
            _pull_all(self.link.js, self.stream, config, limit=limit, timeout=wait),
            wait + _GRACE_S + self.timeout,
            what=f"reading {self.stream}",
        )
        out: list[tuple[int, dict[str, Any]]] = []
        for msg in messages:
            document = _load(msg.data)
            if document is None:
                log.warning("%s seq %s is not a JSON object: skipped", self.stream, msg.metadata)
                continue
            out.append((msg.metadata.sequence.stream, document))
        return out

    async def _open(self) -> None:
        config = api.StreamConfig(
            name=self.stream,
            subjects=[f"{self.prefix}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=self.max_age,
            duplicate_window=self.duplicate_window,
        )
        info = await _add_stream(self.link, config, "event stream")
        if info is None:
            return
        if f"{self.prefix}.>" not in (info.config.subjects or []):
            raise ConfigError(
                f"the stream {self.stream} at {self.link.where} exists over "
                f"{info.config.subjects}, not {self.prefix}.>"
            )
        log.info("the event stream %s exists with other settings: using it", self.stream)
