"""An event sink that publishes to an MQTT broker (Mosquitto, EMQX, Home Assistant's add-on).

::

    from faceledger.events.mqtt import MqttSink

    sink = MqttSink("mqtt://faceledger:secret@broker.lan", node="door-pi")
    sink.send(event.as_json())
    sink.close()

Topics (``prefix`` defaults to ``faceledger``; names go through :func:`topic_level`, which
turns ``/``, ``+``, ``#`` and control characters into ``_``):

- ``{prefix}/cameras/{camera}/events``: every event (``unknown-camera`` when it names none);
- ``{prefix}/subjects/{subject}/events``: also, every event that names a subject;
- ``{prefix}/nodes/{node}/availability``: ``online`` (retained, QoS 1) after every
  (re)connection, ``offline`` (retained) on :meth:`MqttSink.close`, and ``offline`` as the
  connection's Last Will, which the broker publishes when the node's connection drops
  without a goodbye (a killed process: at once) or goes silent for 1.5 keepalive periods
  (a hung process or a cut cable; Mosquitto 2.0 notices a few seconds after that).

Payload: the event as UTF-8 JSON (``json.dumps(event, ensure_ascii=False)``), QoS ``qos``,
not retained (an old event is not a state).

Delivery guarantees, with QoS 1 (the default):

- **at least once**: a message counts as delivered when the broker acknowledges it (PUBACK;
  PUBCOMP with QoS 2); one that was in flight when the connection broke is sent again, so a
  subscriber may see it twice (the event's ``id`` tells duplicates apart);
- **in order per camera**: one client, one connection, one message in flight at a time
  (``MAX_INFLIGHT``), and paho re-sends what it holds in ``send`` order: a duplicate can
  only come right after its original;
- **buffered while the broker is away**: ``send`` never waits for the network and never
  raises because the broker is down; up to ``max_queued`` messages wait in memory and go out,
  in order, after the client reconnects (every 1 to 30 s, doubling);
- beyond ``max_queued`` the event is **dropped**, counted in ``dropped`` and logged; so is an
  event sent after ``close``, and one still unconfirmed when ``close(timeout)`` gives up.

Counters count events: ``sent`` (handed to ``send``), ``delivered`` (every message of the
event confirmed), ``dropped`` (lost as above); ``sent == delivered + dropped + pending``.

What it does not do: keep anything on disk (a queued event dies with the process: use the
webhook sink's outbox for that), de-duplicate, retain events, subscribe to anything, MQTT 5,
client certificates, or check the broker's certificate against anything but the system CA
store. With QoS 0 nothing is queued: an event sent while disconnected is dropped. What
happens after the broker is the broker's: Mosquitto keeps at most ``max_queued_messages``
(1000 by default) for each slow or offline subscriber with a persistent session.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faceledger.errors import ConfigError

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)
_paho_log = logging.getLogger(f"{__name__}.paho")

__all__ = ["MqttSink", "redact_url", "topic_level"]

UNKNOWN_CAMERA = "unknown-camera"
"""The camera level of an event without a camera."""

MAX_INFLIGHT = 1
"""QoS>0 messages sent before their acknowledgement. With one, a reconnection re-sends at
most the last message: a subscriber sees each camera's events in ``send`` order, a repeat
only ever right after the original (with 20, paho's default, it could see 1..12 then 1..20
again). Measured through a local Mosquitto: 8,000 to 15,000 events/s, far above any camera."""

_MAX_LEVEL_CHARS = 1000
"""A topic is at most 65535 UTF-8 bytes: long names are cut to this many characters."""

_UNSAFE = re.compile(r"[/+#\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}
_STOP_GRACE_S = 1.0
_SEVERITY = {1: logging.INFO, 2: logging.INFO, 4: logging.WARNING, 8: logging.ERROR}
"""paho's MQTT_LOG_INFO, _NOTICE, _WARNING and _ERR as logging levels; _DEBUG (16) and
anything else: DEBUG."""


def topic_level(name: object) -> str:
    """``name`` as one safe topic level: ``/``, ``+``, ``#``, control characters (NUL
    included) and lone surrogates become ``_``; empty becomes ``_``; long names are cut."""
    text = _UNSAFE.sub("_", str(name))[:_MAX_LEVEL_CHARS]
    return text or "_"


def redact_url(url: str) -> str:
    """``url`` with its password (anything between the user name and the last ``@``) as ***."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return f"***@{url.rpartition('@')[2]}" if "@" in url else url
    userinfo, at, hostpart = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{hostpart}"


@dataclass(frozen=True)
class _Broker:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    label: str
    """The URL for logs and errors: scheme, user, host and port; never the password."""


def _parse_url(url: str) -> _Broker:
    def bad(reason: str) -> ConfigError:
        return ConfigError(f"MQTT URL {redact_url(url)!r}: {reason}")

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise bad("must start with mqtt:// or mqtts://")
    default_port, tls = _SCHEMES[parts.scheme]
    if not parts.hostname:
        raise bad("names no host")
    try:
        port = parts.port or default_port
    except ValueError:
        raise bad("the port is not a number from 1 to 65535") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise bad("must not have a path, query or fragment (topics come from the prefix)")
    username = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise bad("a password needs a user name")
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    user = f"{urllib.parse.quote(username, safe='')}@" if username else ""
    return _Broker(host, port, tls, username, password, f"{parts.scheme}://{user}{shown}:{port}")


def _check_prefix(prefix: str) -> None:
    reason = None
    if not prefix:
        reason = "is empty"
    elif prefix.startswith("$"):
        reason = "must not start with $ (topics reserved to the broker)"
    elif "#" in prefix or "+" in prefix:
        reason = "must not hold the wildcards # or +"
    elif prefix.startswith("/") or prefix.endswith("/"):
        reason = "must not start or end with /"
    elif "" in prefix.split("/"):
        reason = "must not hold an empty level (//)"
    elif _CONTROL.search(prefix):
        reason = "must not hold control characters"
    if reason:
        raise ConfigError(f"MQTT topic prefix {prefix!r} {reason}")


def _check_node(node: str) -> None:
    if not node or any(c in node for c in "/#+") or _CONTROL.search(node) or node != node.strip():
        raise ConfigError(
            f"MQTT node name {node!r}: must be one non-empty topic level, without / # + "
            "control characters or surrounding spaces"
        )


def _check_numbers(qos: int, max_queued: int, keepalive: int, timeout: float) -> None:
    if qos not in (0, 1, 2):
        raise ConfigError(f"MQTT qos {qos!r}: must be 0, 1 or 2")
    if max_queued < 1:
        raise ConfigError(f"MQTT max_queued {max_queued}: must be at least 1")
    if not 0 <= keepalive <= 65535:
        raise ConfigError(f"MQTT keepalive {keepalive}: must be 0 to 65535 seconds")
    if not timeout > 0:
        raise ConfigError(f"MQTT timeout {timeout}: must be positive")


def _payload(event: dict[str, Any]) -> bytes:
    try:
        return json.dumps(event, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escaped JSON is still valid JSON
        return json.dumps(event).encode("ascii")


class MqttSink:
    """Publishes each event to an MQTT broker (see the module notes for topics and delivery).

    ``timeout`` bounds one connection attempt (TCP connect and TLS handshake);
    ``keepalive`` (seconds) also sets how soon the broker declares a silent node offline.
    """

    def __init__(
        self,
        url: str,
        *,
        node: str,
        prefix: str = "faceledger",
        qos: int = 1,
        client_id: str | None = None,
        max_queued: int = 10_000,
        keepalive: int = 30,
        timeout: float = 5.0,
    ) -> None:
        broker = _parse_url(url)
        _check_prefix(prefix)
        _check_node(node)
        _check_numbers(qos, max_queued, keepalive, timeout)
        self.label = broker.label
        self.node = node
        self.prefix = prefix
        self.qos = qos
        self.max_queued = max_queued
        self.availability_topic = f"{prefix}/nodes/{node}/availability"
        self.sent = 0
        self.delivered = 0
        self.dropped = 0
        self._send_lock = threading.Lock()  # serialises send/close; held across paho calls
        self._state = threading.Condition()  # counters and mids; never held across paho calls
        self._serial = 0
        self._pending: dict[int, int] = {}  # mid -> serial of its event
        self._remaining: dict[int, int] = {}  # serial -> messages not yet acknowledged
        self._early: set[int] = set()  # acknowledged before send() registered the mid
        self._own: set[int] = set()  # availability messages not yet acknowledged
        self._problems: set[str] = set()  # reported since the last good connection
        self._dropping = False
        self._closed = False
        self._connected = False
        self._client = self._make_client(broker, client_id or self._default_client_id(), keepalive)
        self._client.connect_timeout = timeout
        self._client.connect_async(broker.host, broker.port, keepalive)
        self._client.loop_start()

    def __repr__(self) -> str:
        return f"MqttSink({self.label!r}, node={self.node!r})"

    def _default_client_id(self) -> str:
        # unique per sink: two clients with one id make the broker drop them in turns
        return f"faceledger-{self.node}-{uuid.uuid4().hex[:8]}"

    def _make_client(self, broker: _Broker, client_id: str, keepalive: int) -> mqtt.Client:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise ConfigError(
                f"{self.label}: the MQTT sink needs paho-mqtt: pip install 'paho-mqtt>=2.0'"
            ) from None
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,  # the queue lives here, not in a broker session
            protocol=mqtt.MQTTv311,
        )
        client.on_log = self._on_log
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            client.tls_set_context(ssl.create_default_context())
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        client.max_queued_messages_set(self.max_queued)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    # ---- caller side ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the client holds an accepted connection to the broker now."""
        return self._connected

    @property
    def pending(self) -> int:
        """Events accepted but not yet confirmed by the broker."""
        with self._state:
            return len(self._remaining)

    def topics(self, event: dict[str, Any]) -> list[str]:
        """The topics ``event`` is published on."""
        camera = event.get("camera")
        topics = [f"{self.prefix}/cameras/{topic_level(camera or UNKNOWN_CAMERA)}/events"]
        subject = event.get("subject")
        if subject:
            topics.append(f"{self.prefix}/subjects/{topic_level(subject)}/events")
        return topics

    def send(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for the broker and return at once (see the module notes).

        Raises only for an event that is not JSON-serialisable (TypeError, ValueError)."""
        payload = _payload(event)
        topics = self.topics(event)
        with self._send_lock:
            if self._closed:
                self._count_dropped([], "the sink is closed")
                return
            mids, failure = self._publish_all(topics, payload)
            if failure is not None:
                self._count_dropped(mids, failure)
                return
            self._count_sent(mids)

    def _publish_all(self, topics: list[str], payload: bytes) -> tuple[list[int], str | None]:
        import paho.mqtt.client as mqtt

        mids: list[int] = []
        for topic in topics:
            info = self._client.publish(topic, payload, qos=self.qos)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                return mids, f"the queue of {self.max_queued} messages is full"
            if self.qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS:
                return mids, f"not connected, and QoS 0 is never queued ({info.rc.name})"
            mids.append(info.mid)
        return mids, None

    def _count_sent(self, mids: list[int]) -> None:
        with self._state:
            self.sent += 1
            serial = self._serial = self._serial + 1
            waiting = 0
            for mid in mids:
                if mid in self._early:
                    self._early.discard(mid)
                else:
                    self._pending[mid] = serial
                    waiting += 1
            if waiting:
                self._remaining[serial] = waiting
            else:
                self.delivered += 1
                self._state.notify_all()
            resumed, self._dropping = self._dropping, False
            dropped = self.dropped
        if resumed:
            log.warning("%s: accepting events again (%d dropped so far)", self.label, dropped)

    def _count_dropped(self, mids: list[int], reason: str) -> None:
        with self._state:
            self.sent += 1
            self.dropped += 1
            for mid in mids:  # messages of this event already queued: their acks count nothing
                if mid in self._early:
                    self._early.discard(mid)
                else:
                    self._pending[mid] = 0
            first, self._dropping = not self._dropping, True
            dropped = self.dropped
        (log.warning if first else log.debug)(
            "%s: event dropped: %s (%d dropped so far)", self.label, reason, dropped
        )

    def close(self, timeout: float = 5.0) -> None:
        """Publish ``offline``, wait up to ``timeout`` s for what is queued, then disconnect.

        Events still unconfirmed then are counted in ``dropped``. Safe to call twice."""
        import paho.mqtt.client as mqtt

        deadline = time.monotonic() + max(0.0, timeout)
        grace = min(_STOP_GRACE_S, max(0.0, timeout) * 0.2)
        with self._send_lock:
            if self._closed:
                return
            self._closed = True
            info = self._client.publish(self.availability_topic, "offline", qos=1, retain=True)
            with self._state:
                if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                    pass  # full queue (the broker is away): no offline; it keeps the last state
                elif info.mid in self._early:
                    self._early.discard(info.mid)
                else:
                    self._own.add(info.mid)
        with self._state:
            self._state.wait_for(
                lambda: not self._remaining and info.mid not in self._own,
                max(0.0, deadline - grace - time.monotonic()),
            )
            abandoned = len(self._remaining)
            self.dropped += abandoned
            self._remaining.clear()
            self._pending.clear()
        if abandoned:
            log.warning(
                "%s: closed with %d events the broker had not confirmed: dropped (%d in all)",
                self.label,
                abandoned,
                self.dropped,
            )
        self._stop(max(grace, deadline - time.monotonic()))

    def _stop(self, wait: float) -> None:
        self._client.disconnect()
        stopper = threading.Thread(target=self._client.loop_stop, daemon=True)
        stopper.start()
        stopper.join(wait)
        if stopper.is_alive():  # inside a connection attempt: it ends by itself, soon
            self._client.disconnect()  # in case that attempt began after the first one
            log.debug("%s: the network thread is still stopping", self.label)
        self._connected = False

    # ---- network thread (paho callbacks) ---------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._problem(f"the broker refused the connection ({reason})")
            return
        self._connected = True
        with self._state:
            again = bool(self._problems)
            self._problems.clear()
        log.info(
            "%s: %s as node %s", self.label, "reconnected" if again else "connected", self.node
        )
        if not self._closed:
            info = client.publish(self.availability_topic, "online", qos=1, retain=True)
            with self._state:  # its ack is read by this same thread, after this returns
                self._own.add(info.mid)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._problem("cannot reach the broker; retrying")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        was = self._connected
        self._connected = False
        if not self._closed and was:
            self._problem(f"connection lost ({reason}); reconnecting, events are queued")

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        with self._state:
            if mid in self._own:
                self._own.discard(mid)
                self._state.notify_all()
                return
            serial = self._pending.pop(mid, None)
            if serial is None:
                self._early.add(mid)
                return
            left = self._remaining.get(serial)
            if left is None:  # its event was dropped, or abandoned by close()
                return
            if left > 1:
                self._remaining[serial] = left - 1
                return
            del self._remaining[serial]
            self.delivered += 1
            self._state.notify_all()

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, text: str) -> None:
        severity = _SEVERITY.get(level, logging.DEBUG)
        if self._closed and text.startswith("Client is not connected"):
            severity = logging.DEBUG  # paho 2.2 says so as its thread winds down after close
        if _paho_log.isEnabledFor(severity):
            _paho_log.log(severity, "%s: %s", self.label, text)

    def _problem(self, text: str) -> None:
        """Log ``text`` as a warning once until the next good connection, then at debug."""
        with self._state:
            new = text not in self._problems
            self._problems.add(text)
        (log.warning if new else log.debug)("%s: %s", self.label, text)
