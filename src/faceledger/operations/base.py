"""What every operation shares: the database, the stores over it, the engine, the ledger."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.engine import Connection

from faceledger.access import KeyStore
from faceledger.config import Config
from faceledger.db import Database
from faceledger.db.migrate import SCHEMA_VERSION
from faceledger.engine import Engine
from faceledger.errors import ConfigError, StorageError
from faceledger.events.review import Reviews
from faceledger.events.store import Clock, EventStore, utc_now
from faceledger.gallery.indexed import refresh_saved
from faceledger.gallery.store import Gallery
from faceledger.gallery.watchlists import WatchLists
from faceledger.ledger.chain import Ledger, LedgerEntry, LedgerRecord

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded(Generic[T]):
    """What an operation returns: its value, and the ledger entry that records it (written
    before the value was returned, in the same transaction as any change)."""

    value: T
    entry: LedgerEntry

    @property
    def seq(self) -> int:
        return self.entry.seq


class OperationsBase:
    """The database and stores of one gallery, an engine over it, and the ledger.

    Cheap to construct apart from opening the database (which checks and upgrades its
    schema); models load on first use or with :meth:`load`. ``busy_timeout_s``: how long
    a statement waits for another writer's lock before StorageBusyError (default: the
    config's ``db_busy_timeout``)."""

    def __init__(
        self,
        config: Config,
        *,
        create: bool = True,
        engine: Engine | None = None,
        clock: Clock = utc_now,
        busy_timeout_s: float | None = None,
    ) -> None:
        self.config = config
        timeout = config.db_busy_timeout if busy_timeout_s is None else busy_timeout_s
        self.db = Database(config.db, create=create, busy_timeout_s=timeout)
        self.clock = clock
        try:
            self.gallery = Gallery(self.db)
            self.ledger = Ledger(self.db, clock=clock)
            self.events = EventStore(self.db, clock=clock)
            self.reviews = Reviews(self.db, clock=clock)
            self.watchlists = WatchLists(self.db)
            self.keys = KeyStore(self.db)
        except BaseException:
            self.db.close()
            raise
        self._engine = engine
        self._lock: threading.Lock | None = None
        self.loaded = False
        """Whether :meth:`load` has loaded every model (otherwise they load on first use)."""

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The models and matcher (made on first use; nothing loads before it is needed)."""
        if self._engine is None:
            self._engine = Engine(self.config, gallery=self.gallery)
            # dlib's thread safety is not established: its models run one call at a time.
            if any(
                card.name.startswith("dlib")
                for card in (self._engine.detector_card, self._engine.embedder_card)
            ):
                self._lock = threading.Lock()
        return self._engine

    @functools.cached_property
    def model_id(self) -> str:
        return self.engine.model_id

    @functools.cached_property
    def detector_id(self) -> str:
        """The detector's model name (what a detection is recorded with)."""
        return self.engine.detector_card.name

    @property
    def max_id(self) -> int:
        """The largest row id (of a template, an event) the database can hold: SQLite's
        are 64-bit, PostgreSQL's INTEGER columns 32-bit. A larger id names nothing (the
        database would refuse it as out of range rather than find no row)."""
        return 2**31 - 1 if self.db.dialect == "postgresql" else 2**63 - 1

    def _no_such_id(self, value: int) -> bool:
        return not 0 < value <= self.max_id

    @property
    def schema_version(self) -> int:
        """The gallery schema of the database (opening it upgraded it to this one)."""
        return SCHEMA_VERSION

    @property
    def db_name(self) -> str:
        """The database's name for messages: a file's path, or its URL without a password."""
        return self.db.name

    def load(self) -> None:
        """Resolve, verify and load every model now, and read the gallery's templates."""
        self.engine.load()
        self.engine.matcher()
        self.loaded = True

    def _forget_erased(self) -> None:
        """After an erasure: this process's index drops the erased vectors now, and every
        index saved beside the gallery is rewritten without them."""
        try:
            if self._engine is not None and "index" in self._engine.__dict__:
                with self.inference() as engine:
                    engine.index.sync()
            refresh_saved(self.gallery, self.config.index)
        except (StorageError, ConfigError) as exc:
            # the erasure is committed; an index that cannot catch up now is rebuilt or
            # caught up (without the erased) before its next search
            log.warning("after the erasure, an index could not be rewritten: %s", exc)

    @contextlib.contextmanager
    def inference(self) -> Iterator[Engine]:
        """The engine, serialised where its models need it (several threads may call)."""
        engine = self.engine
        if self._lock is None:
            yield engine
        else:
            with self._lock:
                yield engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self.db.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the ledger ---------------------------------------------------------------------

    def _log(self, record: LedgerRecord) -> LedgerEntry:
        """One entry in its own transaction (a search: before its answer is returned)."""
        return self.ledger.append(record)

    def _log_in(self, conn: Connection, record: LedgerRecord) -> LedgerEntry:
        """One entry inside the transaction of the change it records."""
        return self.ledger.append_in(conn, record)

    def _hook(
        self, make: Callable[[T], LedgerRecord], into: list[LedgerEntry]
    ) -> Callable[[Connection, T], None]:
        """A store's ``within`` callback: the record of what the store did, written in its
        transaction; the entry is kept in ``into``."""

        def within(conn: Connection, done: T) -> None:
            into.append(self.ledger.append_in(conn, make(done)))

        return within
