"""What every model shares: the load sequence, and a registry of classes by architecture.

A card is a set of weights; an architecture is the code that runs them. Several cards
share one class (SCRFD-2.5G and SCRFD-500M; MobileFaceNet and both EdgeFaces), so classes
are registered by ``card.architecture``, never by card name.

Every model follows one contract: constructing it is cheap and touches no file;
``load()`` resolves the card's files, verifies them (sha256, through the ModelStore) and
makes them ready to run, once; using the model loads it first if ``load()`` was not called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar

import numpy as np

from faceledger.errors import ConfigError, ModelError
from faceledger.models.catalog import ModelCard
from faceledger.models.store import ModelStore
from faceledger.runtime.onnx import OnnxSession, RuntimeOptions

WARM_UP_SIDE = 64
"""Side of the warm-up input for graphs that take any size: small, so warming is cheap."""

_C = TypeVar("_C")


class ArchitectureRegistry(Generic[_C]):
    """One class per architecture for one kind of model (detector or embedder)."""

    def __init__(self, kind: str, load_all: Callable[[], object]) -> None:
        self.kind = kind
        self._load_all = load_all
        """Imports the modules whose classes register themselves."""
        self._classes: dict[str, _C] = {}

    def register(self, architecture: str) -> Callable[[_C], _C]:
        """Class decorator: ``cls`` runs every card whose architecture is this one."""

        def wrap(cls: _C) -> _C:
            known = self._classes.get(architecture)
            if known is not None and known is not cls:
                raise ValueError(f"{self.kind} architecture {architecture!r} is already {known}")
            self._classes[architecture] = cls
            return cls

        return wrap

    def architectures(self) -> list[str]:
        self._load_all()
        return sorted(self._classes)

    def lookup(self, card: ModelCard) -> _C:
        """The class for ``card``; a clear ConfigError for a card of another kind or an
        architecture no class is registered for."""
        known = ", ".join(self.architectures())
        if card.kind != self.kind:
            raise ConfigError(f"model {card.name} is {_a(card.kind)}, not {_a(self.kind)}")
        if card.architecture not in self._classes:
            raise ConfigError(
                f"model {card.name}: no {self.kind} is registered for its architecture "
                f"{card.architecture!r}; known {self.kind} architectures: {known}"
            )
        return self._classes[card.architecture]


class OnnxModel:
    """A model run by onnxruntime: resolve -> verify -> session -> warm-up, on first use.

    Subclasses do only numpy pre- and post-processing around ``self.session.run``.
    """

    dynamic_batch: ClassVar[bool] = False
    """Rewrite a graph that fixes batch 1 to take any batch (embedders)."""

    def __init__(
        self, card: ModelCard, store: ModelStore, runtime: RuntimeOptions | None = None
    ) -> None:
        self.card = card
        self.store = store
        self.runtime = runtime or RuntimeOptions()
        self._session: OnnxSession | None = None

    @property
    def loaded(self) -> bool:
        return self._session is not None

    @property
    def session(self) -> OnnxSession:
        """The warmed-up session, loaded now if this is the first use."""
        if self._session is None:
            self._session = self._open()
        return self._session

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs on (loads the model)."""
        return self.session.providers

    def load(self) -> None:
        """Resolve, verify, open and warm up the model now (once; later calls do nothing)."""
        self.session  # noqa: B018  (the property loads)

    def _open(self) -> OnnxSession:
        # runtime_path resolves and verifies the card's files (the converted file and its
        # record for a card that is converted locally).
        path = self.store.runtime_path(self.card)
        session = OnnxSession(
            path, self.runtime.threads, self.runtime.providers, dynamic_batch=self.dynamic_batch
        )
        warm_up(session, self.card)
        return session


def warm_up(session: OnnxSession, card: ModelCard) -> None:
    """One run on zeros so that the first real call does not pay onnxruntime's set-up."""
    shape = warm_up_shape(session, card)
    try:
        session.run(np.zeros(shape, dtype=np.float32))
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"model {card.name}: a first run on zeros {shape} failed ({exc})") from exc


def warm_up_shape(session: OnnxSession, card: ModelCard) -> tuple[int, int, int, int]:
    """NCHW of the warm-up input: the graph's fixed sizes, else the card's input size,
    else a small square (graphs that take any size); batch 1 unless the graph fixes it."""
    n, c = (_fixed(d, default) for d, default in zip(session.input_shape[:2], (1, 3), strict=True))
    fixed = session.fixed_hw()
    if fixed is not None:
        return n, c, *fixed
    if card.input_size is not None:
        width, height = card.input_size
        return n, c, height, width
    return n, c, WARM_UP_SIDE, WARM_UP_SIDE


def _fixed(dim: int | str | None, default: int) -> int:
    return dim if isinstance(dim, int) and dim > 0 else default


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"
