"""Archive jobs on a JetStream work queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from faceledger.errors import (
    ConfigError,
    FaceledgerError,
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
)

log = logging.getLogger(__name__)

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
