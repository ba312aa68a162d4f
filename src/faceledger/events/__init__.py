"""Events (one per decided face track): storage in the gallery database, and sinks."""

from faceledger.events.sinks import Dispatcher, JsonlSink, Sink, StdoutSink, WebhookSink
from faceledger.events.store import EventRecord, EventStore

__all__ = [
    "Dispatcher",
    "EventRecord",
    "EventStore",
    "JsonlSink",
    "Sink",
    "StdoutSink",
    "WebhookSink",
]
