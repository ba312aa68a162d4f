"""Camera leases in a JetStream KV bucket: taken and renewed by compare-and-set, with a TTL."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api
from nats.js.kv import KeyValue

from faceledger.errors import (
    ConfigError,
)
from faceledger.network.nats.link import (
    _KV_OP,
    _PRESENCE,
    _STREAM_IN_USE,
    _WRONG_LAST_SEQUENCE,
    DEFAULT_TIMEOUT_S,
    NatsLink,
    _check_name,
    _check_seconds,
    _dump,
    _iso,
    _load,
    _now,
    _parse_time,
    _pull_all,
    decode_key,
    encode_key,
)

log = logging.getLogger(__name__)

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
