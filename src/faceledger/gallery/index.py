"""Vector indexes behind one small array contract: ``search(queries, k) -> (scores, ids)``.

Scores are inner products of L2-normalised vectors (cosine similarities); each row is
sorted best first; when ``k`` exceeds what the index holds the tail is padded with score
``-inf`` and id ``-1``. Ids are the caller's (the gallery's template ids, int64).

Every index can grow (``add``) and forget (``remove``: the vectors are gone from the
index's memory and from what ``save`` writes, not merely hidden), declares its parameters
(``params``) and is written to one file and read back (``save`` / ``load_index``; the kind,
dimension and parameters are kept by the caller, beside the file).

:class:`ExactIndex` (numpy, brute force) is the reference every other implementation is
tested against (``tests/contract/test_vector_index.py``); the FAISS kinds are in
:mod:`faceledger.gallery.faiss_index`.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Protocol

import numpy as np

from faceledger.errors import ConfigError, StorageError

INDEX_KINDS = ("exact", "flat", "pq", "hnsw", "ivf", "ivfpq")
"""Every kind of index, by the name configuration uses (``index.kind``)."""


class VectorIndex(Protocol):
    """What the matcher needs from an index of vectors with int64 ids."""

    kind: ClassVar[str]

    @property
    def dim(self) -> int: ...

    @property
    def size(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(m, d) queries -> (m, k) float32 scores and (m, k) int64 ids, best first."""
        ...

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add (n, d) vectors under ``ids`` (none of them held already)."""
        ...

    def remove(self, ids: np.ndarray) -> int:
        """Forget the vectors of ``ids`` (unknown ids are ignored); how many were held."""
        ...

    def ids(self) -> np.ndarray:
        """Every id held (int64, in no promised order)."""
        ...

    def params(self) -> dict[str, Any]:
        """The declared parameters (what a report prints and ``save`` keeps)."""
        ...

    def save(self, path: Path) -> None:
        """Write the index to the file ``path`` (replaced atomically)."""
        ...


def check_vectors(vectors: np.ndarray, dim: int, what: str = "vectors") -> np.ndarray:
    """(n, dim) C-contiguous float32, or ValueError naming both shapes."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1 and array.shape[0] == dim:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{what} of shape {array.shape} do not fit an index of dimension {dim}")
    return np.ascontiguousarray(array)


def check_ids(ids: np.ndarray, n: int) -> np.ndarray:
    array = np.asarray(ids, dtype=np.int64).reshape(-1)
    if array.shape[0] != n:
        raise ValueError(f"{array.shape[0]} ids given for {n} vectors")
    if array.size and array.min() < 0:
        raise ValueError("ids must be non-negative (-1 marks padding)")
    if np.unique(array).size != array.size:
        raise ValueError("ids must be unique")
    return array


def padded(m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(m, k) results with nothing found: scores -inf, ids -1."""
    return np.full((m, k), -np.inf, dtype=np.float32), np.full((m, k), -1, dtype=np.int64)


def top_k(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and scores of each row's ``k`` best columns, best first (padded)."""
    m, n = sims.shape
    scores, positions = padded(m, k)
    kk = min(k, n)
    if kk == 0:
        return scores, positions
    top = (
        np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (m, 1))
    )
    top_scores = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    positions[:, :kk] = np.take_along_axis(top, order, axis=1)
    scores[:, :kk] = np.take_along_axis(top_scores, order, axis=1)
    return scores, positions


class ExactIndex:
    """Exact inner-product search in numpy: the reference.

    ``ExactIndex(vectors)`` holds them under ids 0..n-1 (their positions); ``ids`` names
    them otherwise. Rows live in one preallocated array that grows by doubling, so an
    ``add`` costs its own rows, not a copy of the whole index."""

    kind: ClassVar[str] = "exact"

    def __init__(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"ExactIndex needs (n, d) vectors, got shape {vectors.shape}")
        n, dim = vectors.shape
        self._dim = int(dim)
        self._vectors = np.ascontiguousarray(vectors)
        self._ids = np.arange(n, dtype=np.int64) if ids is None else check_ids(ids, n)
        self._n = n

    @classmethod
    def empty(cls, dim: int) -> ExactIndex:
        return cls(np.zeros((0, dim), np.float32))

    @classmethod
    def create(cls, dim: int, params: dict[str, Any] | None = None) -> ExactIndex:
        """An empty index (the exact kind has no parameters; ``params`` is ignored)."""
        del params
        return cls.empty(dim)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def size(self) -> int:
        return self._n

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        m = queries.shape[0]
        if self._n == 0 or m == 0:
            return padded(m, k)
        if queries.shape[1] != self._dim:
            raise ValueError(
                f"query dimension {queries.shape[1]} differs from index dimension {self._dim}"
            )
        sims = queries @ self._vectors[: self._n].T
        scores, positions = top_k(sims, k)
        ids = np.where(positions >= 0, self._ids[: self._n][np.maximum(positions, 0)], -1)
        return scores, ids.astype(np.int64)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors = check_vectors(vectors, self._dim)
        ids = check_ids(ids, vectors.shape[0])
        if np.isin(ids, self._ids[: self._n]).any():
            raise ValueError("some ids are in the index already")
        self.append(vectors, ids)

    def append(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """``add`` for a caller that has checked the vectors and ids already."""
        need = self._n + vectors.shape[0]
        if need > self._vectors.shape[0]:
            # grow by an eighth (a million 512-d floats are 2 GB: doubling would take 4 more)
            held = self._vectors.shape[0]
            capacity = max(need, held + max(1024, held // 8))
            grown = np.empty((capacity, self._dim), np.float32)
            grown[: self._n] = self._vectors[: self._n]
            grown_ids = np.full(capacity, -1, np.int64)
            grown_ids[: self._n] = self._ids[: self._n]
            self._vectors, self._ids = grown, grown_ids
        self._vectors[self._n : need] = vectors
        self._ids[self._n : need] = ids
        self._n = need

    def remove(self, ids: np.ndarray) -> int:
        gone = np.isin(self._ids[: self._n], np.asarray(ids, dtype=np.int64).reshape(-1))
        count = int(gone.sum())
        if count:
            keep = ~gone
            kept = int(keep.sum())
            self._vectors[:kept] = self._vectors[: self._n][keep]
            self._ids[:kept] = self._ids[: self._n][keep]
            self._vectors[kept : self._n] = 0.0  # the erased vectors leave memory too
            self._ids[kept : self._n] = -1
            self._n = kept
        return count

    def ids(self) -> np.ndarray:
        return self._ids[: self._n].copy()

    def params(self) -> dict[str, Any]:
        return {}

    def id_view(self) -> np.ndarray:
        """The held ids in storage order (a read-only view: no copy)."""
        view = self._ids[: self._n]
        view.flags.writeable = False
        return view

    def vectors(self) -> np.ndarray:
        """The held vectors, in the order of :meth:`ids` (a view)."""
        return self._vectors[: self._n]

    def save(self, path: Path) -> None:
        def write(out: BinaryIO) -> None:
            np.savez(out, vectors=self._vectors[: self._n], ids=self._ids[: self._n])

        atomic_write(path, write)

    @classmethod
    def load(cls, path: Path, dim: int, params: dict[str, Any]) -> ExactIndex:
        del params
        vectors, ids, _ = read_arrays(path, dim)
        return cls.holding(vectors, ids)

    @classmethod
    def holding(cls, vectors: np.ndarray, ids: np.ndarray) -> ExactIndex:
        """An index over the first ``len(ids)`` rows of ``vectors`` (its further rows are
        room to grow into), taken as they are: no copy."""
        index = cls.empty(vectors.shape[1])
        index._vectors, index._n = vectors, int(ids.shape[0])
        index._ids = np.full(vectors.shape[0], -1, np.int64)
        index._ids[: index._n] = ids
        return index


# ---- files ----------------------------------------------------------------------------------

HEADROOM = 1 / 32
"""Rows read into an index file's vector array beyond those it holds: room for enrollments
before the array must grow (and be copied)."""


def read_arrays(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The ``vectors`` and ``ids`` of an index file written with ``np.savez`` (and its
    other arrays), the vectors read in one pass straight into an array with
    :data:`HEADROOM` spare rows: no second copy of a million vectors."""
    try:
        return _read_arrays(path, dim)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"not an index file: {exc}") from exc


def _read_arrays(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    others: dict[str, np.ndarray] = {}
    vectors: np.ndarray | None = None
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name != "vectors" or info.compress_type != zipfile.ZIP_STORED:
                with archive.open(info) as src:
                    others[name] = np.lib.format.read_array(src)
                continue
            # stored, not compressed (np.savez): read the bytes straight from the file
            raw.seek(info.header_offset)
            local = raw.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError("a damaged zip member")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            raw.seek(info.header_offset + 30 + name_len + extra_len)
            vectors = _read_npy_rows(raw, dim)
    if vectors is None or "ids" not in others:
        raise ValueError("not an index file: no vectors or ids")
    ids = others.pop("ids").astype(np.int64)
    if ids.shape[0] > vectors.shape[0]:
        raise ValueError("more ids than vectors")
    return vectors, ids, others


def _read_npy_rows(src: BinaryIO, dim: int) -> np.ndarray:
    """An (n, dim) float32 .npy array from ``src`` into an array with spare rows."""
    version = np.lib.format.read_magic(src)
    header = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = header(src)
    if fortran or dtype != np.float32 or len(shape) != 2 or shape[1] != dim:
        raise ValueError(f"vectors of shape {shape} and type {dtype}, not (n, {dim})")
    n = int(shape[0])
    vectors = np.empty((n + max(16, int(n * HEADROOM)), dim), np.float32)
    view = memoryview(vectors[:n].reshape(-1)).cast("B")
    if src.readinto(view) != view.nbytes:  # type: ignore[attr-defined]
        raise ValueError("the vectors are cut short")
    return vectors


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` atomically: a temporary file beside it, fsynced, then renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write the index file {path}: {exc.strerror or exc}") from exc


class IndexClass(Protocol):
    kind: ClassVar[str]

    def load(self, path: Path, dim: int, params: dict[str, Any]) -> VectorIndex: ...


def index_class(kind: str) -> Any:
    """The class of an index kind (FAISS kinds import faiss only when asked for)."""
    if kind == "exact":
        return ExactIndex
    if kind not in INDEX_KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; choose one of: {', '.join(INDEX_KINDS)}")
    try:
        from faceledger.gallery import faiss_index
    except ImportError as exc:
        raise ConfigError(
            f"the {kind} index needs faiss-cpu (pip install faiss-cpu): {exc}"
        ) from exc
    return faiss_index.KINDS[kind]


def make_index(kind: str, dim: int, params: dict[str, Any]) -> VectorIndex:
    """An empty index of ``kind`` with its declared ``params``."""
    if kind == "exact":
        return ExactIndex.empty(dim)
    index: VectorIndex = index_class(kind)(dim, params)
    return index


def load_index(path: Path, kind: str, dim: int, params: dict[str, Any]) -> VectorIndex:
    """Read an index file written by ``save``; StorageError when it cannot be read."""
    cls = index_class(kind)
    try:
        index: VectorIndex = cls.load(path, dim, params)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise StorageError(f"{path}: cannot read the {kind} index: {exc}") from exc
    if index.dim != dim:
        raise StorageError(f"{path}: the index has dimension {index.dim}, expected {dim}")
    return index
