"""The sync bridge to NATS (one asyncio loop on a thread), and what the JetStream uses share:
names, keys, times, JSON, reading a stream, creating one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import math
import re
import threading
import time
from collections.abc import Coroutine
from datetime import datetime, timezone
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

except ImportError as _exc:  # pragma: no cover - the optional client is not installed
    _NATS_MISSING = f"nats-py is not installed ({_exc}): pip install 'nats-py>=2.6'"

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
