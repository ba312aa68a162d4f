"""MqttSink against a real Mosquitto broker: topics, payloads, order, availability and its
Last Will, an outage, credentials, a full queue. Every wait is bounded."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from faceledger.errors import ConfigError
from faceledger.events.mqtt import MqttSink, topic_level
from faceledger.testing.mosquitto import MosquittoBroker, mosquitto_unavailable

WAIT_S = 10.0


def _need_broker(*, users: bool = False) -> None:
    reason = mosquitto_unavailable(users=users)
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def broker() -> Iterator[MosquittoBroker]:
    _need_broker()
    with MosquittoBroker() as running:
        yield running


def _wait(condition: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


class Subscriber:
    """A paho client that records every message on ``topic`` (QoS 1)."""

    def __init__(
        self,
        port: int,
        topic: str = "faceledger/#",
        *,
        client_id: str | None = None,
        clean: bool = True,
        auth: tuple[str, str] | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.topic = topic
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-sub-{uuid.uuid4().hex[:8]}",
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
        if auth:
            self.client.username_pw_set(*auth)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(WAIT_S), f"no SUBACK for {topic} in {WAIT_S} s"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, codes: Any, props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append(Message(message.topic, bytes(message.payload), message.retain))

    def on(self, topic: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def under(self, prefix: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic.startswith(prefix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _texts(messages: list[Message]) -> list[str]:
    return [m.text for m in messages]


def _ids(messages: list[Message]) -> list[int]:
    return [json.loads(m.payload)["id"] for m in messages]


def _connected(sink: MqttSink) -> MqttSink:
    assert _wait(lambda: sink.connected), f"{sink!r} did not connect in {WAIT_S} s"
    return sink


# ---- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("front-door", "front-door"),
        ("back/yard", "back_yard"),
        ("a+b#c", "a_b_c"),
        ("nul\x00tab\tbell\x07del\x7fc1\x85", "nul_tab_bell_del_c1_"),
        ("line\nbreak", "line_break"),
        ("Zoë Ångström", "Zoë Ångström"),
        ("", "_"),
        ("/", "_"),
        (42, "42"),
        ("x" * 5000, "x" * 1000),
        ("lone\ud800surrogate", "lone_surrogate"),
    ],
)
def test_topic_level_is_one_safe_level(name: object, level: str) -> None:
    assert topic_level(name) == level


@pytest.mark.parametrize(
    ("url", "kwargs", "match"),
    [
        ("http://x", {}, "mqtt:// or mqtts://"),
        ("x", {}, "mqtt:// or mqtts://"),
        ("mqtt://", {}, "no host"),
        ("mqtt://host:99999", {}, "port"),
        ("mqtt://host:port", {}, "port"),
        ("mqtt://host/some/topic", {}, "path"),
        ("mqtt://host?x=1", {}, "path"),
        ("mqtt://:pw-only@host", {}, "user name"),
        ("mqtt://host", {"prefix": ""}, "empty"),
        ("mqtt://host", {"prefix": "/fl"}, "start or end"),
        ("mqtt://host", {"prefix": "fl/"}, "start or end"),
        ("mqtt://host", {"prefix": "a//b"}, "empty level"),
        ("mqtt://host", {"prefix": "site/#"}, "wildcards"),
        ("mqtt://host", {"prefix": "a/+/b"}, "wildcards"),
        ("mqtt://host", {"prefix": "$SYS"}, r"\$"),
        ("mqtt://host", {"prefix": "a\x00b"}, "control"),
        ("mqtt://host", {"node": ""}, "node name"),
        ("mqtt://host", {"node": "a/b"}, "node name"),
        ("mqtt://host", {"node": "a#"}, "node name"),
        ("mqtt://host", {"node": "a+"}, "node name"),
        ("mqtt://host", {"node": " pad"}, "node name"),
        ("mqtt://host", {"qos": 3}, "qos"),
        ("mqtt://host", {"qos": -1}, "qos"),
        ("mqtt://host", {"max_queued": 0}, "max_queued"),
        ("mqtt://host", {"timeout": 0}, "timeout"),
    ],
)
def test_bad_settings_are_config_errors(url: str, kwargs: dict[str, Any], match: str) -> None:
    settings: dict[str, Any] = {"node": "n1", **kwargs}
    with pytest.raises(ConfigError, match=match):
        MqttSink(url, **settings)


@pytest.mark.parametrize(
    "url",
    [
        "http://bob:hunter2-secret@host",
        "mqtt://bob:hunter2-secret@host:notaport",
        "mqtt://bob:hunter2-secret@host/path",
        "mqtt://bob:pa/hunter2-secret@host",
        "bob:hunter2-secret@host",
    ],
)
def test_config_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MqttSink(url, node="n1")
    assert "hunter2-secret" not in str(caught.value)
    assert "***" in str(caught.value)


# ---- against a broker ------------------------------------------------------------------------

CAMERAS = ("front", "back/yard#2", "lobby")
CAMERA_LEVELS = ("front", "back_yard_2", "lobby")


def _event(i: int) -> dict[str, Any]:
    subject = "ada" if i % 4 == 0 else ("Zoë" if i % 5 == 0 else None)
    return {"id": i, "camera": CAMERAS[i % 3], "subject": subject, "score": round(i / 30, 4)}


def test_topics_payloads_order_and_availability(
    broker: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="faceledger.events.mqtt")
    sub = Subscriber(broker.port)
    sink = _connected(MqttSink(broker.url, node="gate-1", keepalive=5))
    availability = "faceledger/nodes/gate-1/availability"
    assert sink.availability_topic == availability
    assert _wait(lambda: _texts(sub.on(availability)) == ["online"])

    events = [_event(i) for i in range(30)]
    for event in events:
        sink.send(event)
    named = [e for e in events if e["subject"]]
    assert _wait(lambda: len(sub.under("faceledger/cameras/")) == 30), sub.messages
    assert _wait(lambda: len(sub.under("faceledger/subjects/")) == len(named))
    assert _wait(lambda: sink.delivered == 30)
    assert (sink.sent, sink.delivered, sink.dropped, sink.pending) == (30, 30, 0, 0)

    for camera, level in zip(CAMERAS, CAMERA_LEVELS, strict=True):
        got = sub.on(f"faceledger/cameras/{level}/events")
        assert _ids(got) == [e["id"] for e in events if e["camera"] == camera]  # in send order
        assert not any(m.retain for m in got)
    by_id = {e["id"]: e for e in events}
    for message in sub.under("faceledger/cameras/"):
        assert json.loads(message.payload) == by_id[json.loads(message.payload)["id"]]
    assert {m.topic for m in sub.under("faceledger/subjects/")} == {
        "faceledger/subjects/ada/events",
        "faceledger/subjects/Zoë/events",
    }
    assert _ids(sub.on("faceledger/subjects/ada/events")) == [
        e["id"] for e in named if e["subject"] == "ada"
    ]
    zoe = sub.on("faceledger/subjects/Zoë/events")
    assert _ids(zoe) == [e["id"] for e in named if e["subject"] == "Zoë"]
    assert "Zoë".encode() in zoe[0].payload  # ensure_ascii=False: UTF-8, not \u escapes

    late = Subscriber(broker.port, availability)
    assert _wait(lambda: bool(late.on(availability)))
    assert late.on(availability)[0] == Message(availability, b"online", retain=True)
    late.close()

    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < 2.0
    sink.close()  # twice is fine
    assert _wait(lambda: _texts(sub.on(availability)) == ["online", "offline"])
    after = Subscriber(broker.port, availability)
    assert _wait(lambda: bool(after.on(availability)))
    assert after.on(availability)[0] == Message(availability, b"offline", retain=True)
    after.close()
    sub.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_events_without_camera_and_with_a_prefix(broker: MosquittoBroker) -> None:
    sub = Subscriber(broker.port, "site/a/#")
    sink = _connected(MqttSink(broker.url, node="n2", prefix="site/a", qos=2))
    sink.send({"id": 1, "camera": None, "subject": ""})
    sink.send({"id": 2})
    assert _wait(lambda: len(sub.under("site/a/cameras/")) == 2)
    assert {m.topic for m in sub.under("site/a/cameras/")} == {
        "site/a/cameras/unknown-camera/events"
    }
    assert not sub.under("site/a/subjects/")
    sink.close()
    assert sink.delivered == 2
    sub.close()


@pytest.mark.parametrize("how", ["kill -9", "SIGSTOP"])
def test_last_will_marks_a_dead_node_offline(broker: MosquittoBroker, how: str) -> None:
    keepalive = 2
    availability = "faceledger/nodes/doomed/availability"
    sub = Subscriber(broker.port, availability)
    script = textwrap.dedent(
        f"""
        import sys, time
        from faceledger.events.mqtt import MqttSink
        sink = MqttSink(sys.argv[1], node="doomed", keepalive={keepalive})
        time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, broker.url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if not _wait(lambda: _texts(sub.on(availability)) == ["online"], 20.0):
            child.kill()
            pytest.fail(f"the child sink never said online: {child.communicate(timeout=5)[1]}")
        # kill -9: the kernel closes the socket and the broker publishes the will at once.
        # SIGSTOP: the socket stays open but silent, so only the keepalive timeout (1.5
        # periods) tells; Mosquitto 2.0 checks it coarsely: 4.7 to 5.4 s measured here.
        child.send_signal(signal.SIGKILL if how == "kill -9" else signal.SIGSTOP)
        started = time.monotonic()
        bound = keepalive * 1.5 if how == "kill -9" else keepalive * 1.5 + 4.0
        assert _wait(lambda: _texts(sub.on(availability)) == ["online", "offline"], bound)
        print(f"{how}: offline after {time.monotonic() - started:.2f} s")
        assert sub.on(availability)[-1].payload == b"offline"
    finally:
        child.kill()
        child.communicate(timeout=10)
        sub.close()


def test_outage_buffers_and_delivers_in_order() -> None:
    _need_broker()
    # Made deterministic, whatever reconnects first, by a persistent session on a broker
    # with persistence: the subscriber (clean_session=False, QoS 1) disconnects before the
    # outage, stopping the broker (SIGTERM) saves its session and subscription to disk, and
    # the restart restores them; the sink then delivers everything (its ``delivered`` counter
    # counts the broker's PUBACKs) while the subscriber is away, and only then does the
    # subscriber come back and receive what the broker queued for it, in order.
    with MosquittoBroker(persistence=True) as broker:

        def persistent_subscriber() -> Subscriber:
            return Subscriber(broker.port, "faceledger/cameras/#", client_id="sub", clean=False)

        sub = persistent_subscriber()
        sink = _connected(MqttSink(broker.url, node="outage", keepalive=5))
        for i in range(2):
            sink.send({"id": i, "camera": CAMERAS[i % 3]})
        assert _wait(lambda: sink.delivered == 2 and len(sub.messages) == 2)
        sub.close()  # a clean DISCONNECT: the broker keeps the session (clean_session=False)

        broker.stop()
        assert _wait(lambda: not sink.connected), "the sink did not notice the outage"
        slowest = 0.0
        for i in range(2, 12):
            started = time.monotonic()
            sink.send({"id": i, "camera": CAMERAS[i % 3]})
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 0.05, f"a send took {slowest * 1000:.1f} ms while the broker was down"
        assert (sink.sent, sink.delivered, sink.pending, sink.dropped) == (12, 2, 10, 0)

        broker.start()
        started = time.monotonic()
        assert _wait(lambda: sink.delivered == 12, 15.0), (sink.delivered, broker.log_tail())
        print(f"outage: all confirmed {time.monotonic() - started:.2f} s after the restart")
        back = persistent_subscriber()
        assert _wait(lambda: len(back.messages) == 10), (back.messages, broker.log_tail())
        for camera, level in zip(CAMERAS, CAMERA_LEVELS, strict=True):
            got = _ids(back.on(f"faceledger/cameras/{level}/events"))
            assert got == [i for i in range(2, 12) if CAMERAS[i % 3] == camera]
        sink.close()
        back.close()


@pytest.mark.parametrize(
    ("url", "label"),
    [("mqtt://127.0.0.1", "mqtt://127.0.0.1:1883"), ("mqtts://[::1]", "mqtts://[::1]:8883")],
)
def test_default_ports(url: str, label: str) -> None:
    pytest.importorskip("paho.mqtt.client")
    sink = MqttSink(url, node="n1")
    assert repr(sink) == f"MqttSink({label!r}, node='n1')"
    sink.close(timeout=0.3)


def test_credentials(caplog: pytest.LogCaptureFixture) -> None:
    _need_broker(users=True)
    caplog.set_level(logging.DEBUG, logger="faceledger.events.mqtt")
    users = {"sensor": "s3cret-pass", "watcher": "w4tch-pass"}
    with MosquittoBroker(users=users) as broker:
        sub = Subscriber(broker.port, auth=("watcher", "w4tch-pass"))
        good = MqttSink(f"mqtt://sensor:s3cret-pass@127.0.0.1:{broker.port}", node="authed")
        good.send({"id": 1, "camera": "front"})
        assert _wait(lambda: len(sub.under("faceledger/cameras/")) == 1)
        good.close()
        assert good.delivered == 1
        assert "s3cret-pass" not in repr(good)
        assert repr(good) == f"MqttSink('mqtt://sensor@127.0.0.1:{broker.port}', node='authed')"

        bad = MqttSink(f"mqtt://sensor:wr0ng-pass@127.0.0.1:{broker.port}", node="refused")
        label = f"mqtt://sensor@127.0.0.1:{broker.port}"
        warned = lambda: [  # noqa: E731
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and "refused the connection" in r.getMessage()
        ]
        assert _wait(lambda: bool(warned())), caplog.text
        assert label in warned()[0]
        bad.send({"id": 2, "camera": "front"})
        started = time.monotonic()
        bad.close(timeout=1.0)
        assert time.monotonic() - started < 1.2
        assert (bad.sent, bad.delivered, bad.dropped) == (1, 0, 1)
        assert "wr0ng-pass" not in caplog.text
        assert "s3cret-pass" not in caplog.text
        assert len(sub.under("faceledger/cameras/")) == 1
        sub.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_full_queue_drops_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("paho.mqtt.client")
    caplog.set_level(logging.WARNING, logger="faceledger.events.mqtt")
    sink = MqttSink(f"mqtt://127.0.0.1:{_closed_port()}", node="lonely", max_queued=5)
    slowest = 0.0
    for i in range(10):
        started = time.monotonic()
        sink.send({"id": i, "camera": "front"})
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 0.05
    assert (sink.sent, sink.delivered, sink.dropped, sink.pending) == (10, 0, 5, 5)
    started = time.monotonic()
    sink.close(timeout=0.5)
    assert time.monotonic() - started < 0.7
    sink.send({"id": 10})  # after close: dropped, not raised
    assert (sink.sent, sink.delivered, sink.dropped, sink.pending) == (11, 0, 11, 0)
    assert "queue of 5 messages is full" in caplog.text
    assert "the sink is closed" not in caplog.text  # one warning per dropping spell


def test_throughput_through_the_broker(broker: MosquittoBroker) -> None:
    count = 3000
    sink = _connected(MqttSink(broker.url, node="bench"))
    started = time.monotonic()
    for i in range(count):
        sink.send({"id": i, "camera": CAMERAS[i % 3], "score": 0.5})
    assert _wait(lambda: sink.delivered == count, 30.0), sink.delivered
    rate = count / (time.monotonic() - started)
    print(f"MQTT sink, QoS 1, one in flight: {rate:.0f} events/s confirmed by the broker")
    sink.close()
    assert rate > 500
