"""Bulk work on several workers, answers in input order, memory bounded.

A bulk command (identify, enroll, detect or scan of many files, re-embedding a gallery)
hands the expensive per-input work -- read, detect, align, embed -- to ``workers``
workers and gets the answers back **in input order**, while the caller (the operations
layer) matches, records and shows them. At most ``window`` inputs are in flight at once,
so a batch of a million photos holds a few dozen answers in memory, never all of them.

Two kinds of worker, chosen by what the models allow:

- **threads**, where the models release the GIL while they compute (onnxruntime,
  OpenCV, Pillow's decoder): each thread builds its own state (an engine at one
  inference thread) on first use, in that thread;
- **processes** (``spawn``), where they do not: dlib's Python bindings hold the GIL, so
  two threads ran dlib's HOG detector and ResNet embedder at 1.06x one thread (2 cores,
  80 LFW photos; the results were identical). Each process builds its own state from a
  picklable factory (``functools.partial(Engine, config)``), gets one input at a time and
  returns a small picklable answer (faces, vectors, a failure's reason; never pixels).

With one worker nothing is started: each input runs in the calling thread, on the
caller's own state (:func:`ordered` takes it as ``local``).

This module knows nothing of faces: a *factory* makes a worker's state, a *task*
``task(state, item) -> answer`` does one input. For processes both must be picklable
(module-level functions, ``functools.partial`` of them, classes). A task should turn an
input's own failure into an answer (the batch goes on); anything it raises ends the batch
and is raised in the caller.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import (
    BrokenExecutor,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from multiprocessing import get_context
from typing import Any, Generic, Literal, TypeVar

from faceledger.errors import FaceledgerError

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

Kind = Literal["thread", "process"]
WINDOW_PER_WORKER = 8
"""Inputs in flight per worker by default: enough that no worker waits while the caller
commits a batch to the ledger (a few ms on a busy disk); the answers are small."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None) -> int:
    """``workers`` as asked, or every available core when None or 0."""
    if workers is None or workers <= 0:
        return available_cores()
    return workers


class OrderedPool(Generic[S, T, R]):
    """Runs ``task(state, item)`` for many items on ``workers`` workers (threads or
    processes), handing the answers back in input order.

    ``factory()`` makes one worker's state, once per worker, in that worker; ``close``
    (threads only) releases it when the pool ends. ``local``: for one worker, a context
    manager giving the caller's own state (e.g. an engine behind its lock); without it the
    one worker is a thread like any other.
    """

    def __init__(
        self,
        factory: Callable[[], S],
        task: Callable[[S, T], R],
        workers: int,
        *,
        kind: Kind = "thread",
        window: int | None = None,
        local: Callable[[], contextlib.AbstractContextManager[S]] | None = None,
        close: Callable[[S], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"a pool needs at least one worker, not {workers}")
        self.factory = factory
        self.task = task
        self.workers = workers
        self.kind: Kind = kind
        self.window = max(workers, window or workers * WINDOW_PER_WORKER)
        self.local = local
        self.close = close

    # ---- the caller's side --------------------------------------------------------------

    def map(
        self, items: Iterable[T], on_submit: Callable[[int, T], None] | None = None
    ) -> Generator[R, None, None]:
        """Each item's answer, in input order."""
        for batch in self.batches(items, 1, on_submit):
            yield from batch

    def batches(
        self,
        items: Iterable[T],
        limit: int = 32,
        on_submit: Callable[[int, T], None] | None = None,
        linger: float = 0.0,
    ) -> Generator[list[R], None, None]:
        """The answers in input order, in lists of the next answer and as many after it
        as are done within ``linger`` seconds of it (at most ``limit``): a caller that
        records each list in one transaction shows a slow stream's answers one by one,
        and shares a fast stream's transactions between many answers.

        ``on_submit(index, item)`` runs in the caller's thread just before an item is
        handed to a worker (e.g. to write the ledger entry that starts its run). Stopping
        the iteration early cancels what was not started and waits for what was."""
        if limit < 1:
            raise ValueError(f"a batch holds at least one answer, not {limit}")
        if self.workers == 1 and self.local is not None:
            yield from self._inline(items, on_submit)
            return
        executor = self._executor()
        pending: deque[Future[R]] = deque()
        source = iter(enumerate(items))
        try:

            def fill() -> None:
                while len(pending) < self.window:
                    nxt = next(source, None)
                    if nxt is None:
                        return
                    index, item = nxt
                    if on_submit is not None:
                        on_submit(index, item)
                    pending.append(self._submit(executor, item))

            fill()
            while pending:
                batch = [_answer(pending.popleft())]
                deadline = time.monotonic() + linger
                while pending and len(batch) < limit:
                    if not pending[0].done():
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        fill()
                        wait([pending[0]], timeout=left)
                        if not pending[0].done():
                            break
                    batch.append(_answer(pending.popleft()))
                fill()  # keep the workers busy while the caller records and shows
                yield batch
        finally:
            for future in pending:
                future.cancel()
            executor.shutdown(wait=True, cancel_futures=True)
            self._release()

    # ---- the workers' side --------------------------------------------------------------

    def _inline(
        self, items: Iterable[T], on_submit: Callable[[int, T], None] | None
    ) -> Generator[list[R], None, None]:
        local = self.local
        if local is None:
            raise RuntimeError("no local state to run inline on")
        for index, item in enumerate(items):
            if on_submit is not None:
                on_submit(index, item)
            with local() as state:
                answer = self.task(state, item)
            yield [answer]

    def _executor(self) -> Executor:
        if self.kind == "process":
            return ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=_process_init,
                initargs=(self.factory,),
            )
        self._states: list[S] = []
        self._lock = threading.Lock()
        self._tls = threading.local()
        return ThreadPoolExecutor(self.workers, thread_name_prefix="faceledger-worker")

    def _submit(self, executor: Executor, item: T) -> Future[R]:
        if self.kind == "process":
            return executor.submit(_process_call, self.task, item)
        return executor.submit(self._thread_call, item)

    def _thread_call(self, item: T) -> R:
        state = getattr(self._tls, "state", None)
        if state is None:  # first input of this thread: its own state, made here
            state = self.factory()
            self._tls.state = state
            with self._lock:
                self._states.append(state)
        return self.task(state, item)

    def _release(self) -> None:
        if self.kind != "thread":
            return
        for state in self._states:
            if self.close is not None:
                self.close(state)
        self._states = []


def _answer(future: Future[R]) -> R:
    try:
        return future.result()
    except BrokenExecutor as exc:
        raise FaceledgerError(
            f"a worker stopped before answering ({exc or type(exc).__name__}); run again with "
            "--workers 1 to see the input that stops it"
        ) from None


_process: dict[str, Any] = {}
"""In a worker process: its ``factory`` (set when it starts) and its ``state`` (made from
it on the first input)."""


def _process_init(factory: Callable[[], Any]) -> None:
    """A worker process starts: Ctrl-C is the parent's to handle (it stops the pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _process["factory"] = factory


def _process_call(task: Callable[[Any, Any], Any], item: Any) -> Any:
    if "factory" not in _process:
        raise RuntimeError("a pool task ran in a process the pool did not start")
    try:
        if "state" not in _process:
            _process["state"] = _process["factory"]()
        return task(_process["state"], item)
    except Exception as exc:
        raise _portable(exc) from None


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives the trip back to the parent, else the nearest class above it
    that does, with its message. An exception whose constructor takes other arguments
    than it stores (``InputError(source, reason)``) cannot be unpickled, and would break
    the whole pool instead of reporting itself."""
    if _round_trips(exc):
        return exc
    for cls in type(exc).__mro__[1:]:
        if issubclass(cls, Exception):
            try:
                candidate = cls(str(exc))
            except Exception:
                continue
            if _round_trips(candidate):
                return candidate
    return RuntimeError(f"{type(exc).__name__}: {exc}")


def _round_trips(exc: Exception) -> bool:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return False
    return True
