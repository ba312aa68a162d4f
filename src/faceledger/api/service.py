"""Everything one running API holds: the engine and the stores over one gallery."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from faceledger.access import KeyStore
from faceledger.api.metrics import Metrics
from faceledger.config import Config
from faceledger.engine import Engine
from faceledger.events.review import Reviews
from faceledger.events.store import EventStore
from faceledger.gallery.watchlists import WatchLists
from faceledger.ledger import Ledger


@dataclass
class Service:
    config: Config
    engine: Engine
    ledger: Ledger
    keys: KeyStore
    watchlists: WatchLists
    events: EventStore
    reviews: Reviews
    metrics: Metrics
    _lock: threading.Lock | None = field(default=None, repr=False)

    @classmethod
    def open(cls, config: Config, engine: Engine | None = None) -> Service:
        engine = engine or Engine(config)
        gallery = engine.gallery  # opens (and upgrades) the database now, not on a request
        dlib = any(
            card.name.startswith("dlib") for card in (engine.detector_card, engine.embedder_card)
        )
        return cls(
            config=config,
            engine=engine,
            ledger=Ledger(gallery),
            keys=KeyStore(gallery),
            watchlists=WatchLists(gallery),
            events=EventStore(gallery),
            reviews=Reviews(gallery),
            metrics=Metrics(),
            # dlib's thread safety is not established: its models run one call at a time.
            _lock=threading.Lock() if dlib else None,
        )

    @contextlib.contextmanager
    def inference(self) -> Iterator[Engine]:
        """The engine, serialised where its models need it."""
        if self._lock is None:
            yield self.engine
        else:
            with self._lock:
                yield self.engine

    def close(self) -> None:
        self.engine.close()
