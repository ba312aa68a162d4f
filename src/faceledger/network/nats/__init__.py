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

from faceledger.network.nats.events import EventStream
from faceledger.network.nats.jobs import Job, JobQueue, JobWorker
from faceledger.network.nats.keeper import KeeperEvent, LeaseKeeper
from faceledger.network.nats.leases import Lease, LeaseInfo, Leases, LeaseSnapshot
from faceledger.network.nats.link import NatsLink, decode_key, encode_key, redact_url, subject_token

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
