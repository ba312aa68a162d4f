"""Everything one running API holds: the operations over one gallery, and its metrics.

The API never opens a store, a SQL connection or the ledger itself: each endpoint calls
one :class:`~faceledger.operations.Operations` method with the caller's acting context
(:func:`faceledger.api.auth.acting`) and renders what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field

from faceledger.api.metrics import Metrics
from faceledger.api.sessions import SessionStore
from faceledger.config import Config
from faceledger.operations import Operations


@dataclass
class Service:
    ops: Operations
    metrics: Metrics = field(default_factory=Metrics)
    sessions: SessionStore = field(default_factory=SessionStore)
    owned: bool = True
    """Whether :meth:`close` closes ``ops`` (False when the caller lent them)."""

    @classmethod
    def open(cls, config: Config, ops: Operations | None = None) -> Service:
        """Over ``ops`` when given (kept open by :meth:`close`); otherwise over new
        operations on ``config``'s database, opened (and its schema upgraded) now rather
        than on a request."""
        if ops is not None:
            return cls(ops, owned=False)
        return cls(Operations(config))

    @property
    def config(self) -> Config:
        return self.ops.config

    def close(self) -> None:
        if self.owned:
            self.ops.close()
