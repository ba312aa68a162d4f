"""The JetStream stream of decided events."""

from __future__ import annotations

import logging
from typing import Any

from nats.js import api

from faceledger.errors import (
    ConfigError,
    InputError,
)
from faceledger.network.nats.link import (
    _GRACE_S,
    DEFAULT_TIMEOUT_S,
    NatsLink,
    _add_stream,
    _check_name,
    _check_seconds,
    _check_subject,
    _dump,
    _load,
    _msg_id,
    _pull_all,
    subject_token,
)

log = logging.getLogger(__name__)

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
