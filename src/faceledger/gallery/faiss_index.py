"""FAISS indexes behind the :class:`~faceledger.gallery.index.VectorIndex` contract.

Every kind uses the inner-product metric (cosine similarity of unit vectors) and is written
to one plain FAISS file (``faiss.write_index``), replaced atomically:

``flat``
    ``IndexIDMap2(IndexFlatIP)``: exact, like :class:`ExactIndex`, in FAISS's kernels.
``hnsw``
    ``IndexIDMap2(IndexHNSWFlat)``. HNSW cannot delete, so ``remove`` overwrites the
    removed vectors' stored floats with zeros (the biometric data leave memory and the
    file) and turns their ids in the id map into tombstones (negative ids: ``-2 - position``);
    searches skip tombstones with an ``IDSelector``, and the id can be added again. The
    tombstones live in the id map, so the file keeps them with nothing beside it. When they
    exceed 20% of the stored vectors the graph is rebuilt from the live vectors.
``ivf`` / ``ivfpq``
    ``IndexIVFFlat`` / ``IndexIVFPQ`` (8-bit codes of ``pq_bytes`` bytes) over an
    ``IndexFlatIP`` quantizer. An IVF index must be trained before it holds anything: until
    it has been given at least ``max(nlist, 256)`` vectors (256: what 8-bit PQ training
    needs; the same floor keeps a tiny first batch from fixing a tiny ``nlist`` for good) it
    keeps them in an exact buffer (:class:`ExactIndex`, searched exactly), then trains on
    them (at most 100,000 rows, sampled with a fixed seed) and moves them into the IVF
    index. A gallery built with one ``add`` of all its vectors trains on that batch.
    ``nlist`` is ``ivf_nlist`` or ``round(4 * sqrt(n))`` for the ``n`` vectors held at
    training, clipped to ``1..n``; it does not change afterwards. ``remove`` zeroes the
    removed entries' codes in the inverted lists before FAISS drops them.

Parameters are those of :class:`faceledger.config.IndexConfig` (``hnsw_m``,
``hnsw_ef_construction``, ``hnsw_ef_search``, ``ivf_nlist``, ``ivf_nprobe``, ``pq_bytes``);
other keys are ignored. ``params()`` reports what is in use. On ``load`` the structural ones
(M, efConstruction, nlist, PQ size) come from the file; the search-time ones (efSearch,
nprobe) come from the ``params`` given, when they name them, else from the file.

This module never changes FAISS's (OpenMP's) thread count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import faiss
import numpy as np

from faceledger.errors import ConfigError
from faceledger.gallery.index import (
    ExactIndex,
    atomic_write,
    check_ids,
    check_vectors,
    padded,
    read_arrays,
)

__all__ = ["KINDS", "FlatIndex", "HNSWIndex", "IVFIndex", "IVFPQIndex", "PQRerankIndex"]

DEFAULTS: dict[str, Any] = {
    "hnsw_m": 32,
    "hnsw_ef_construction": 80,
    "hnsw_ef_search": 128,
    "ivf_nlist": None,
    "ivf_nprobe": 32,
    "pq_bytes": 64,
    "pq_subquantizers": 64,
    "pq_rerank": 512,
}
"""The defaults of :class:`faceledger.config.IndexConfig`, for a params dict that omits one."""

MIN_TRAIN = 256
"""IVF kinds buffer vectors exactly until they hold at least ``max(nlist, MIN_TRAIN)``."""

MIN_TRAIN_PQ = 1024
"""The ``pq`` kind searches exactly until it holds this many vectors, then trains."""

MAX_TRAIN = 100_000
"""IVF training uses at most this many rows (a seeded sample)."""

TRAIN_SEED = 20240601

REBUILD_FRACTION = 0.2
"""HNSW rebuilds its graph when tombstones exceed this share of the stored vectors."""

PQ_NBITS = 8


def _param(params: Mapping[str, Any] | None, name: str, lo: int = 1) -> Any:
    value = (params or {}).get(name)
    if value is None:
        return DEFAULTS[name]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ConfigError(f"index parameter {name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _write(index: Any, path: Path) -> None:
    def write(out: BinaryIO) -> None:
        faiss.write_index(index, faiss.PyCallbackIOWriter(out.write))  # type: ignore[attr-defined]

    atomic_write(path, write)


def _read(path: Path, dim: int) -> Any:
    index = faiss.read_index(str(path))  # already of its own class, and owning its memory
    if index.d != dim:
        raise ValueError(f"the file holds vectors of dimension {index.d}, expected {dim}")
    return index


def _view(pointer: Any, count: int, shape: tuple[int, ...]) -> np.ndarray:
    """A writable numpy view of ``count`` items of FAISS memory (empty when ``count`` is 0)."""
    if count == 0:
        return np.zeros(shape, np.uint8)
    return faiss.rev_swig_ptr(pointer, count).reshape(shape)


def _id_map(idmap: Any) -> np.ndarray:
    """The IndexIDMap2's position -> id array, as a writable view."""
    n = int(idmap.id_map.size())
    return _view(idmap.id_map.data(), n, (n,)) if n else np.zeros(0, np.int64)


def _flat_vectors(flat: Any) -> np.ndarray:
    """The (ntotal, d) stored floats of an IndexFlat, as a writable view."""
    n, d = int(flat.ntotal), int(flat.d)
    return _view(flat.get_xb(), n * d, (n, d)) if n else np.zeros((0, d), np.float32)


def _results(scores: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS output (maybe fewer than ``k`` columns) -> the contract's (m, k) arrays:
    float32 scores, int64 ids, missing ones as -inf / -1 at the tail, best first."""
    m, kk = labels.shape
    out_scores, out_ids = padded(m, k)
    missing = labels < 0
    out_ids[:, :kk] = np.where(missing, -1, labels)
    out_scores[:, :kk] = np.where(missing, -np.inf, scores)
    floor = np.where(missing, np.finfo(np.float32).min, out_scores[:, :kk])  # no inf - inf
    if kk > 1 and np.any(np.diff(floor, axis=1) > 0):
        order = np.argsort(-out_scores[:, :kk], axis=1, kind="stable")
        out_scores[:, :kk] = np.take_along_axis(out_scores[:, :kk], order, axis=1)
        out_ids[:, :kk] = np.take_along_axis(out_ids[:, :kk], order, axis=1)
    return out_scores, out_ids


class _HeldIds:
    """The ids an index holds, as a sorted array (membership by binary search)."""

    def __init__(self, ids: np.ndarray | None = None) -> None:
        self.sorted = (
            np.sort(np.asarray(ids, np.int64)) if ids is not None else np.zeros(0, np.int64)
        )

    def __len__(self) -> int:
        return int(self.sorted.size)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        if not self.sorted.size:
            return np.zeros(ids.shape, bool)
        at = np.minimum(np.searchsorted(self.sorted, ids), self.sorted.size - 1)
        return np.asarray(self.sorted[at] == ids)

    def add(self, ids: np.ndarray) -> None:
        ids = np.sort(np.asarray(ids, np.int64))
        if not self.sorted.size or (ids.size and ids[0] > self.sorted[-1]):
            self.sorted = np.concatenate([self.sorted, ids])  # new ids come last: no sort
        else:
            self.sorted = np.sort(np.concatenate([self.sorted, ids]))

    def discard(self, ids: np.ndarray) -> np.ndarray:
        """Forget ``ids``; the ones that were held."""
        ids = np.unique(np.asarray(ids, np.int64).reshape(-1))
        held = ids[self.contains(ids)]
        if held.size:
            self.sorted = self.sorted[~np.isin(self.sorted, held, assume_unique=True)]
        return held


class _FaissIndex:
    """What every FAISS kind shares: checking, the held ids, the search wrapper."""

    kind: ClassVar[str]

    def __init__(self, dim: int, params: Mapping[str, Any] | None = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"index dimension must be a positive integer, got {dim!r}")
        self._dim = int(dim)
        self._held = _HeldIds()

    @classmethod
    def create(cls, dim: int, params: Mapping[str, Any] | None = None) -> Any:
        return cls(dim, dict(params or {}))

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def size(self) -> int:
        return len(self._held)

    def ids(self) -> np.ndarray:
        return self._held.sorted.copy()

    def _check_search(self, queries: np.ndarray, k: int) -> np.ndarray:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"k must be a non-negative integer, got {k!r}")
        return check_vectors(queries, self._dim, "queries")

    def _check_add(self, vectors: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vectors = check_vectors(vectors, self._dim)
        ids = check_ids(ids, vectors.shape[0])
        present = self._held.contains(ids)
        if present.any():
            shown = ", ".join(str(i) for i in ids[present][:5])
            raise ValueError(f"some ids are in the index already: {shown}")
        return vectors, ids

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = self._check_search(queries, k)
        m = queries.shape[0]
        kk = min(int(k), self.size)
        if m == 0 or kk == 0:
            return padded(m, int(k))
        return self._search(queries, int(k), kk)

    def _search(self, queries: np.ndarray, k: int, kk: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class FlatIndex(_FaissIndex):
    """Exact inner-product search: ``IndexIDMap2(IndexFlatIP)``."""

    kind: ClassVar[str] = "flat"

    def __init__(self, dim: int, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(dim, params)
        self._flat: Any = faiss.IndexFlatIP(self._dim)
        self._index = faiss.IndexIDMap2(self._flat)

    def params(self) -> dict[str, Any]:
        return {}

    def _search(self, queries: np.ndarray, k: int, kk: int) -> tuple[np.ndarray, np.ndarray]:
        scores, labels = self._index.search(queries, kk)
        return _results(scores, labels, k)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors, ids = self._check_add(vectors, ids)
        if ids.size:
            self._index.add_with_ids(vectors, ids)
            self._held.add(ids)

    def remove(self, ids: np.ndarray) -> int:
        held = self._held.discard(ids)
        if held.size:
            positions = np.flatnonzero(np.isin(_id_map(self._index), held))
            # zero first: remove_ids compacts, and what it leaves past the end is not erased
            _flat_vectors(faiss.downcast_index(self._index.index))[positions] = 0.0
            self._index.remove_ids(faiss.IDSelectorBatch(held))
        return int(held.size)

    def save(self, path: Path) -> None:
        _write(self._index, path)

    @classmethod
    def load(cls, path: Path, dim: int, params: Mapping[str, Any] | None = None) -> FlatIndex:
        index = _read(path, dim)
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else None
        if (
            not isinstance(inner, faiss.IndexFlat)
            or index.metric_type != faiss.METRIC_INNER_PRODUCT
        ):
            raise ValueError(f"not a flat inner-product index file ({type(index).__name__})")
        self = cls(dim, params)
        self._flat, self._index = inner, index
        self._held = _HeldIds(_id_map(index))
        return self


class HNSWIndex(_FaissIndex):
    """Approximate search on an HNSW graph: ``IndexIDMap2(IndexHNSWFlat)`` (see the module
    notes on removal: zeroed vectors, tombstoned ids, rebuild past 20%)."""

    kind: ClassVar[str] = "hnsw"

    def __init__(self, dim: int, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(dim, params)
        self._m = _param(params, "hnsw_m", 2)
        self._ef_construction = _param(params, "hnsw_ef_construction")
        self._ef_search = _param(params, "hnsw_ef_search")
        self._tombstones = 0
        self._live = faiss.IDSelectorNot(faiss.IDSelectorRange(-(2**63), 0))
        """Selects ids >= 0: every stored vector but the tombstones."""
        self._hnsw, self._index = self._fresh()

    def _fresh(self) -> tuple[Any, Any]:
        hnsw = faiss.IndexHNSWFlat(self._dim, self._m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = self._ef_construction
        hnsw.hnsw.efSearch = self._ef_search
        return hnsw, faiss.IndexIDMap2(hnsw)

    def params(self) -> dict[str, Any]:
        return {
            "hnsw_m": self._m,
            "hnsw_ef_construction": self._ef_construction,
            "hnsw_ef_search": self._ef_search,
        }

    @property
    def tombstones(self) -> int:
        """Removed vectors still in the graph (zeroed, never returned)."""
        return self._tombstones

    def _search(self, queries: np.ndarray, k: int, kk: int) -> tuple[np.ndarray, np.ndarray]:
        ef = max(self._ef_search, kk)
        sel = self._live if self._tombstones else None
        params = faiss.SearchParametersHNSW(efSearch=ef, sel=sel)  # type: ignore[attr-defined]
        scores, labels = self._index.search(queries, kk, params=params)
        return _results(scores, labels, k)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors, ids = self._check_add(vectors, ids)
        if ids.size:
            self._index.add_with_ids(vectors, ids)
            self._held.add(ids)

    def remove(self, ids: np.ndarray) -> int:
        held = self._held.discard(ids)
        if not held.size:
            return 0
        id_map = _id_map(self._index)
        positions = np.flatnonzero(np.isin(id_map, held))
        _flat_vectors(faiss.downcast_index(self._hnsw.storage))[positions] = 0.0
        id_map[positions] = -2 - positions  # tombstones: unique, negative, never selected
        self._tombstones += int(positions.size)
        if self._tombstones > REBUILD_FRACTION * int(self._index.ntotal):
            self._rebuild()
        return int(held.size)

    def _rebuild(self) -> None:
        """A fresh graph of the live vectors (the old one held only zeros for the removed)."""
        id_map = _id_map(self._index)
        live = np.flatnonzero(id_map >= 0)
        vectors = _flat_vectors(faiss.downcast_index(self._hnsw.storage))[live].copy()
        ids = id_map[live].copy()
        self._hnsw, self._index = self._fresh()
        if ids.size:
            self._index.add_with_ids(vectors, ids)
        vectors[:] = 0.0
        self._tombstones = 0

    def save(self, path: Path) -> None:
        _write(self._index, path)

    @classmethod
    def load(cls, path: Path, dim: int, params: Mapping[str, Any] | None = None) -> HNSWIndex:
        index = _read(path, dim)
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else None
        if (
            not isinstance(inner, faiss.IndexHNSWFlat)
            or inner.metric_type != faiss.METRIC_INNER_PRODUCT
        ):
            raise ValueError(f"not an HNSW inner-product index file ({type(index).__name__})")
        self = cls(dim, params)
        self._hnsw, self._index = inner, index
        self._m = int(inner.hnsw.nb_neighbors(1))  # type: ignore[attr-defined]
        self._ef_construction = int(inner.hnsw.efConstruction)
        if (params or {}).get("hnsw_ef_search") is None:
            self._ef_search = int(inner.hnsw.efSearch)
        id_map = _id_map(index)
        live = id_map >= 0
        self._held = _HeldIds(id_map[live])
        self._tombstones = int((~live).sum())
        return self


class IVFIndex(_FaissIndex):
    """Approximate search over inverted lists: ``IndexIVFFlat`` (exact buffer until trained;
    see the module notes)."""

    kind: ClassVar[str] = "ivf"

    def __init__(self, dim: int, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(dim, params)
        self._nlist_declared: int | None = _param(params, "ivf_nlist")
        self._nprobe: int = _param(params, "ivf_nprobe")
        self._nlist: int | None = None
        self._buffer: ExactIndex | None = ExactIndex.empty(self._dim)
        self._index: Any = None
        self._quantizer: Any = None
        self._check_structure()

    def _check_structure(self) -> None:
        pass

    # ---- building -------------------------------------------------------------------

    @property
    def trained(self) -> bool:
        return self._index is not None

    def _train_from(self) -> int:
        """How many vectors the buffer gathers before training."""
        return max(self._nlist_declared or 1, MIN_TRAIN)

    def _new_index(self, quantizer: Any, nlist: int) -> Any:
        return faiss.IndexIVFFlat(quantizer, self._dim, nlist, faiss.METRIC_INNER_PRODUCT)

    def _train(self, vectors: np.ndarray) -> None:
        n = vectors.shape[0]
        nlist = self._nlist_declared or round(4 * math.sqrt(n))
        nlist = max(1, min(nlist, n))
        if n > MAX_TRAIN:
            rows = np.sort(np.random.default_rng(TRAIN_SEED).choice(n, MAX_TRAIN, replace=False))
            sample = np.ascontiguousarray(vectors[rows])
        else:
            sample = vectors
        quantizer = faiss.IndexFlatIP(self._dim)
        index = self._new_index(quantizer, nlist)
        index.cp.min_points_per_centroid = 1  # few rows per list are allowed: no stderr warning
        if isinstance(index, faiss.IndexIVFPQ):
            index.pq.cp.min_points_per_centroid = 1
        index.train(sample)
        index.nprobe = min(self._nprobe, nlist)
        self._quantizer, self._index, self._nlist = quantizer, index, nlist

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors, ids = self._check_add(vectors, ids)
        if not ids.size:
            return
        if self._index is None:
            assert self._buffer is not None
            if self._buffer.size + ids.size < self._train_from():
                self._buffer.add(vectors, ids)
                self._held.add(ids)
                return
            held = self._buffer.size
            vectors = np.concatenate([self._buffer.vectors(), vectors]) if held else vectors
            ids = np.concatenate([self._buffer.ids(), ids]) if held else ids
            self._train(vectors)
            self._buffer.remove(self._buffer.ids())  # zeroes what it held
            self._buffer = None
            self._held = _HeldIds()
        self._index.add_with_ids(vectors, ids)
        self._held.add(ids)

    # ---- searching and forgetting ---------------------------------------------------

    def _search(self, queries: np.ndarray, k: int, kk: int) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            assert self._buffer is not None
            return self._buffer.search(queries, k)
        scores, labels = self._index.search(queries, kk)
        return _results(scores, labels, k)

    def remove(self, ids: np.ndarray) -> int:
        held = self._held.discard(ids)
        if not held.size:
            return 0
        if self._index is None:
            assert self._buffer is not None
            self._buffer.remove(held)
            return int(held.size)
        # zero the codes first: remove_ids moves the last entry of a list over a removed one
        # and shrinks the list, which leaves a removed last entry's bytes in place
        invlists = self._index.invlists
        code_size = int(self._index.code_size)
        for list_no in range(int(self._index.nlist)):
            n = int(invlists.list_size(list_no))
            if not n:
                continue
            gone = np.isin(_view(invlists.get_ids(list_no), n, (n,)), held)
            if gone.any():
                codes = _view(invlists.get_codes(list_no), n * code_size, (n, code_size))
                codes[gone] = 0
        self._index.remove_ids(faiss.IDSelectorBatch(held))
        return int(held.size)

    # ---- reporting and files --------------------------------------------------------

    def params(self) -> dict[str, Any]:
        return {
            "ivf_nlist": self._nlist if self._nlist is not None else self._nlist_declared,
            "ivf_nprobe": self._nprobe,
            "trained": self.trained,
        }

    def save(self, path: Path) -> None:
        if self._index is not None:
            _write(self._index, path)
            return
        assert self._buffer is not None  # untrained: the buffer, as a flat index file
        buffer = faiss.IndexIDMap2(faiss.IndexFlatIP(self._dim))
        if self._buffer.size:
            buffer.add_with_ids(self._buffer.vectors(), self._buffer.ids())
        _write(buffer, path)

    @classmethod
    def _structure(cls, index: Any) -> dict[str, Any]:
        """Constructor parameters a file fixes (the PQ size), overriding the given ones."""
        del index
        return {}

    def _adopt(self, index: Any) -> None:
        """Take a trained index read from a file (checked by the subclass)."""
        if not isinstance(index, faiss.IndexIVFFlat) or isinstance(index, faiss.IndexIVFPQ):
            raise ValueError(f"not an IVF-Flat index file ({type(index).__name__})")

    @classmethod
    def load(cls, path: Path, dim: int, params: Mapping[str, Any] | None = None) -> Any:
        index = _read(path, dim)
        self = cls(dim, {**(params or {}), **cls._structure(index)})
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError("not an inner-product index file")
        if isinstance(index, faiss.IndexIDMap2):  # saved before training
            inner = faiss.downcast_index(index.index)
            if not isinstance(inner, faiss.IndexFlat):
                raise ValueError(f"not an {cls.kind} index file ({type(inner).__name__})")
            ids = _id_map(index).copy()
            assert self._buffer is not None
            if ids.size:
                self._buffer.add(_flat_vectors(inner), ids)
            self._held = _HeldIds(ids)
            return self
        self._adopt(index)
        self._index, self._quantizer = index, None  # the file's index owns its quantizer
        self._nlist = int(index.nlist)
        if (params or {}).get("ivf_nprobe") is None:
            self._nprobe = int(index.nprobe)
        index.nprobe = min(self._nprobe, self._nlist)
        self._buffer = None
        invlists = index.invlists
        chunks = [
            _view(invlists.get_ids(i), n, (n,)).copy()
            for i in range(self._nlist)
            if (n := int(invlists.list_size(i)))
        ]
        self._held = _HeldIds(np.concatenate(chunks) if chunks else None)
        return self


class IVFPQIndex(IVFIndex):
    """Inverted lists of product-quantised codes: ``IndexIVFPQ`` with ``pq_bytes`` 8-bit
    sub-quantisers (``pq_bytes`` must divide the dimension)."""

    kind: ClassVar[str] = "ivfpq"

    def __init__(self, dim: int, params: Mapping[str, Any] | None = None) -> None:
        self._pq_bytes: int = _param(params, "pq_bytes")
        super().__init__(dim, params)

    def _check_structure(self) -> None:
        if self._dim % self._pq_bytes:
            raise ConfigError(
                f"pq_bytes {self._pq_bytes} does not divide the embedding dimension "
                f"{self._dim}; choose a divisor of {self._dim}"
            )

    def _train_from(self) -> int:
        return max(self._nlist_declared or 1, MIN_TRAIN, 2**PQ_NBITS)

    def _new_index(self, quantizer: Any, nlist: int) -> Any:
        return faiss.IndexIVFPQ(
            quantizer, self._dim, nlist, self._pq_bytes, PQ_NBITS, faiss.METRIC_INNER_PRODUCT
        )

    def params(self) -> dict[str, Any]:
        return {**super().params(), "pq_bytes": self._pq_bytes, "pq_nbits": PQ_NBITS}

    @classmethod
    def _structure(cls, index: Any) -> dict[str, Any]:
        return {"pq_bytes": int(index.pq.M)} if isinstance(index, faiss.IndexIVFPQ) else {}

    def _adopt(self, index: Any) -> None:
        if not isinstance(index, faiss.IndexIVFPQ):
            raise ValueError(f"not an IVF-PQ index file ({type(index).__name__})")
        self._pq_bytes = int(index.pq.M)


class PQRerankIndex(_FaissIndex):
    """Every vector as a 4-bit product-quantised code scanned with SIMD
    (``IndexPQFastScan``, ``pq_subquantizers`` codes of 4 bits: 32 bytes a vector at 64), the
    ``pq_rerank`` best candidates of each query re-scored exactly with the stored floats.

    No partition, no graph: every vector is looked at on every search, so a face whose
    mate is in the gallery is not missed because its list was not probed or the graph walk
    went elsewhere (what IVF and HNSW do to real face embeddings among a million others:
    docs/ACCURACY.md); the scan of a million 32-byte codes takes about a millisecond. The
    floats (for the re-ranking) are an :class:`ExactIndex` kept in the same order as the
    codes; ``remove`` zeroes and drops both. Until ``MIN_TRAIN_PQ`` vectors are held it is
    exact (the quantiser needs them to train); then it trains on a seeded sample of at most
    ``MAX_TRAIN`` rows, once."""

    kind: ClassVar[str] = "pq"

    def __init__(self, dim: int, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(dim, params)
        given = (params or {}).get("pq_subquantizers") is not None
        self._m: int = _param(params, "pq_subquantizers")
        if not given:  # the default: the largest divisor of the dimension up to it
            self._m = max(m for m in range(1, min(self._m, self._dim) + 1) if self._dim % m == 0)
        self._rerank: int = _param(params, "pq_rerank")
        if self._dim % self._m:
            raise ConfigError(
                f"pq_subquantizers {self._m} does not divide the embedding dimension "
                f"{self._dim}; choose a divisor of {self._dim}"
            )
        self._exact = ExactIndex.empty(self._dim)
        self._codes: Any = None

    def params(self) -> dict[str, Any]:
        return {"pq_subquantizers": self._m, "pq_nbits": 4, "pq_rerank": self._rerank,
                "trained": self._codes is not None}  # fmt: skip

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors, ids = self._check_add(vectors, ids)
        if not ids.size:
            return
        self._exact.append(vectors, ids)  # checked against the held ids above
        self._held.add(ids)
        if self._codes is not None:
            self._codes.add(vectors)
        elif self._exact.size >= MIN_TRAIN_PQ:
            self._train()

    def _train(self) -> None:
        held = self._exact.vectors()
        rng = np.random.default_rng(TRAIN_SEED)
        sample = (
            held
            if len(held) <= MAX_TRAIN
            else held[rng.choice(len(held), MAX_TRAIN, replace=False)]
        )
        codes = faiss.IndexPQFastScan(self._dim, self._m, 4, faiss.METRIC_INNER_PRODUCT)
        codes.train(np.ascontiguousarray(sample))
        for at in range(0, len(held), 65536):
            codes.add(np.ascontiguousarray(held[at : at + 65536]))
        self._codes = codes

    def remove(self, ids: np.ndarray) -> int:
        held = self._held.discard(ids)
        if not held.size:
            return 0
        positions = np.flatnonzero(np.isin(self._exact.ids(), held))
        self._exact.remove(held)  # zeroes and compacts, keeping the order of the rest
        if self._codes is not None:  # FAISS compacts the codes in the same order
            self._codes.remove_ids(faiss.IDSelectorBatch(positions.astype(np.int64)))
        return int(held.size)

    def _search(self, queries: np.ndarray, k: int, kk: int) -> tuple[np.ndarray, np.ndarray]:
        if self._codes is None:
            return self._exact.search(queries, k)
        wanted = min(max(self._rerank, kk), self.size)
        _, positions = self._codes.search(queries, wanted)
        vectors, ids = self._exact.vectors(), self._exact.id_view()
        scores, out = padded(queries.shape[0], k)
        for row, (query, candidates) in enumerate(zip(queries, positions, strict=True)):
            found = candidates[candidates >= 0]
            exact = vectors[found] @ query
            best = np.argsort(-exact, kind="stable")[:kk]
            scores[row, : best.size] = exact[best]
            out[row, : best.size] = ids[found[best]]
        return scores, out

    def save(self, path: Path) -> None:
        codes = (
            faiss.serialize_index(self._codes) if self._codes is not None else np.zeros(0, np.uint8)
        )

        def write(out: BinaryIO) -> None:
            np.savez(out, vectors=self._exact.vectors(), ids=self._exact.ids(), codes=codes)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: Path, dim: int, params: Mapping[str, Any] | None = None) -> PQRerankIndex:
        vectors, ids, others = read_arrays(path, dim)
        codes = others.get("codes", np.zeros(0, np.uint8))
        index = faiss.deserialize_index(codes) if codes.size else None
        structure = {"pq_subquantizers": int(index.M)} if index is not None else {}
        self = cls(dim, {**(params or {}), **structure})
        self._exact = ExactIndex.holding(vectors, ids)
        self._held = _HeldIds(ids)
        if index is not None:
            if index.d != dim or index.ntotal != len(ids):
                raise ValueError("the codes do not match the stored vectors")
            self._codes = index
        return self


KINDS: dict[str, type[Any]] = {
    "flat": FlatIndex,
    "pq": PQRerankIndex,
    "hnsw": HNSWIndex,
    "ivf": IVFIndex,
    "ivfpq": IVFPQIndex,
}
"""The FAISS index classes by kind (``index_class`` in :mod:`faceledger.gallery.index`)."""
