"""The gallery's vector index, kept in a file and caught up with the database.

Opening a gallery of a million templates must not read a million blobs. The index of one
model's templates is saved beside the gallery (a SQLite file's ``<name>.index/`` folder;
for PostgreSQL, a folder in the user's cache named after the database), together with
the position in the template log (``template_log``, written by triggers on every insert,
delete or change of a template) it was saved at. Opening reads the file, then only the
templates the log names after that position: those removed leave the index, those added
are read and added. The same catch-up runs before every search, so a change made by any
process (another CLI call, a server, a camera node) is seen by the next search.

A saved index is used only when it was made for this database (the log's epoch, and the
log row it stopped at, still match), this model, dimension and index kind; otherwise the
index is rebuilt from the database in one pass and saved. An erasure rewrites every saved
index of the gallery (:func:`refresh_saved`), so an erased template's vector does not stay
in a file either.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from faceledger.config import IndexConfig
from faceledger.errors import StorageError
from faceledger.gallery.index import (
    ExactIndex,
    VectorIndex,
    atomic_write,
    load_index,
    make_index,
)
from faceledger.gallery.matcher import Labels, Matcher
from faceledger.gallery.store import Gallery, LoadedTemplates, LogPosition
from faceledger.types import Threshold

log = logging.getLogger(__name__)

FORMAT = 1
REBUILD_SHARE = 0.5
"""Rebuild rather than catch up when the log names more than this share of the index."""


@dataclass(frozen=True)
class IndexStats:
    """What a report says about the index a search ran over."""

    kind: str
    params: dict[str, Any]
    size: int
    source: str
    """'saved' (read from its file), 'database' (built from every template) or 'empty'."""
    open_s: float
    """Seconds the first open took (reading or building, catching up)."""
    folder: str | None
    caught_up: int = 0
    """Templates the last catch-up read or removed."""


def choose_kind(settings: IndexConfig, size: int) -> str:
    """The configured kind, or for ``auto`` the one this gallery size calls for."""
    if settings.kind != "auto":
        return settings.kind
    if size >= settings.auto_pq_from:
        return "ivfpq"
    if size >= settings.auto_approximate_from:
        return "pq"
    return "flat"


def index_params(settings: IndexConfig, kind: str, size: int) -> dict[str, Any]:
    """The declared parameters of ``kind``, by their ``[index]`` names (the IVF list count
    picked by gallery size when it is not set)."""
    if kind == "hnsw":
        return {
            "hnsw_m": settings.hnsw_m,
            "hnsw_ef_construction": settings.hnsw_ef_construction,
            "hnsw_ef_search": settings.hnsw_ef_search,
        }
    if kind == "pq":
        return {"pq_subquantizers": settings.pq_subquantizers, "pq_rerank": settings.pq_rerank}
    if kind in ("ivf", "ivfpq"):
        nlist = settings.ivf_nlist or max(1, round(4 * math.sqrt(max(size, 1))))
        params: dict[str, Any] = {"ivf_nlist": nlist, "ivf_nprobe": settings.ivf_nprobe}
        if kind == "ivfpq":
            params["pq_bytes"] = settings.pq_bytes
        return params
    return {}


def default_folder(gallery: Gallery) -> Path | None:
    """Beside a SQLite file; in the user cache for a server database (None: in memory)."""
    url = gallery.db.url
    if url.path is not None:
        path = Path(url.path)
        return path.with_name(path.name + ".index")
    if gallery.db.dialect == "sqlite":
        return None  # an in-memory database
    digest = hashlib.sha256(gallery.name.encode()).hexdigest()[:16]
    return Path(platformdirs.user_cache_dir("faceledger")) / "index" / digest


def _stem(model_id: str, kind: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", model_id) + "." + kind


@dataclass
class _Live:
    index: VectorIndex
    labels: Labels
    position: LogPosition
    saved_seq: int
    """The log position of the newest saved file (-1: none)."""
    stats: IndexStats
    pending_removals: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


class GalleryIndex:
    """One model's templates in a vector index, persisted and caught up (see module)."""

    def __init__(
        self, gallery: Gallery, model_id: str, dim: int, settings: IndexConfig | None = None
    ) -> None:
        self.gallery = gallery
        self.model_id = model_id
        self.dim = dim
        self.settings = settings or IndexConfig()
        folder = self.settings.dir if self.settings.dir is not None else default_folder(gallery)
        self.folder = folder if self.settings.persist else None
        self._live: _Live | None = None
        self._within: dict[frozenset[int], tuple[tuple[LogPosition, frozenset[int]], Matcher]] = {}

    # ---- what searches use ----------------------------------------------------------------

    def matcher(self, threshold: Threshold | Callable[[int], Threshold]) -> Matcher:
        """A matcher over the index caught up now; ``threshold`` may be a function of the
        index's size (a search's threshold depends on how many templates it compares)."""
        live = self.sync()
        if callable(threshold):
            threshold = threshold(live.index.size)
        return Matcher(live.index, live.labels, threshold)

    def matcher_within(
        self, subject_ids: frozenset[int], threshold: Callable[[int], Threshold]
    ) -> Matcher:
        """A matcher over only the templates of ``subject_ids`` (a camera's watch lists:
        nobody else can be named, or be a candidate), exact, caught up now; the threshold
        is that of a search of that many templates. Kept while neither the gallery nor the
        set of subjects changes."""
        live = self.sync()
        key = (live.position, subject_ids)
        held = self._within.get(subject_ids)
        if held is not None and held[0] == key:
            return held[1]
        chosen = np.isin(live.labels.subject_ids, np.fromiter(subject_ids, np.int64))
        ids = live.labels.template_ids[chosen]
        loaded = self.gallery.load_templates(self.model_id, ids)
        self._check_dim(loaded)
        vectors = loaded.vectors if loaded.size else np.zeros((0, self.dim), np.float32)
        index = ExactIndex(vectors, loaded.ids)
        labels = Labels(loaded.ids, loaded.subject_ids, self.gallery.names_of)
        made = Matcher(index, labels, threshold(index.size))
        if len(self._within) >= 64:
            self._within.clear()
        self._within[subject_ids] = (key, made)
        return made

    @property
    def stats(self) -> IndexStats:
        return self.sync().stats

    def sync(self) -> _Live:
        """The index, caught up with every change committed so far."""
        head = self.gallery.log_head()
        live = self._live
        if live is not None and live.position == head:
            return live
        started = time.perf_counter()
        if live is None:
            live = self._open(head)
        elif head.epoch != live.position.epoch or (
            self.gallery.log_row(live.position.seq) != live.position.row
        ):
            live = self._build(head, started)  # another database, or a restored copy
        else:
            live = self._catch_up(live, head)
        self._live = live
        self._maybe_save(live)
        return live

    def save(self) -> Path | None:
        """Write the index now (None when it is kept in memory only)."""
        live = self.sync()
        return self._save(live)

    def rebuild(self) -> IndexStats:
        """Build the index from every template now (and save it), whatever was saved."""
        self._live = self._build(self.gallery.log_head(), time.perf_counter())
        return self._live.stats

    def close(self) -> None:
        self._live = None

    # ---- opening ------------------------------------------------------------------------

    def _open(self, head: LogPosition) -> _Live:
        started = time.perf_counter()
        saved = self._read_saved(head)
        if saved is None:
            return self._build(head, started)
        live = self._catch_up(saved, head)
        live.stats = IndexStats(
            live.stats.kind, live.index.params(), live.index.size, "saved",
            time.perf_counter() - started, str(self.folder), live.stats.caught_up,
        )  # fmt: skip
        return live

    def _build(self, head: LogPosition, started: float) -> _Live:
        loaded = self.gallery.load_templates(self.model_id)
        self._check_dim(loaded)
        kind = choose_kind(self.settings, loaded.size)
        params = index_params(self.settings, kind, loaded.size)
        index = make_index(kind, self.dim, params)
        if loaded.size:
            index.add(loaded.vectors, loaded.ids)
        labels = Labels(loaded.ids, loaded.subject_ids, self.gallery.names_of)
        stats = IndexStats(
            kind, index.params(), index.size, "database" if loaded.size else "empty",
            time.perf_counter() - started, str(self.folder) if self.folder else None,
        )  # fmt: skip
        live = _Live(index, labels, head, -1, stats)
        if loaded.size:
            self._save(live)
        return live

    def _check_dim(self, loaded: LoadedTemplates) -> None:
        if loaded.size and loaded.vectors.shape[1] != self.dim:
            raise StorageError(
                f"{self.gallery.name}: templates of {self.model_id} hold "
                f"{loaded.vectors.shape[1]} numbers, but the model gives {self.dim}"
            )

    def _catch_up(self, live: _Live, head: LogPosition) -> _Live:
        touched = self.gallery.changed_since(live.position.seq, head.seq)
        if touched.size > max(REBUILD_SHARE * live.index.size, 1024):
            return self._build(head, time.perf_counter())
        held = touched[live.labels.subjects_of(touched) >= 0]  # an enrollment: usually none
        removed = live.index.remove(held) if held.size else 0
        if held.size:
            live.labels.remove(held)
        current = self.gallery.load_templates(self.model_id, touched)
        self._check_dim(current)
        kind = live.stats.kind
        if choose_kind(self.settings, live.index.size + current.size) != kind and (
            self.settings.kind == "auto"
        ):
            return self._build(head, time.perf_counter())  # the gallery outgrew its kind
        if current.size:
            live.index.add(current.vectors, current.ids)
            live.labels.add(current.ids, current.subject_ids)
        live.position = head
        # a vector that left the index must leave its file too: save soon
        gone = removed > 0 and not np.isin(touched, current.ids).all()
        live.pending_removals = live.pending_removals or gone
        live.stats = IndexStats(
            kind, live.index.params(), live.index.size, live.stats.source,
            live.stats.open_s, live.stats.folder, int(touched.size),
        )  # fmt: skip
        return live

    # ---- the files ----------------------------------------------------------------------

    def _manifest_path(self, kind: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / (_stem(self.model_id, kind) + ".json")

    def _read_saved(self, head: LogPosition) -> _Live | None:
        """The saved index, if there is one this database's log can catch up."""
        if self.folder is None or not self.folder.is_dir():
            return None
        kinds = [self.settings.kind] if self.settings.kind != "auto" else ["flat", "hnsw", "ivfpq"]
        for kind in kinds:
            manifest = self._manifest_path(kind)
            try:
                found = json.loads(manifest.read_text()) if manifest else None
            except (OSError, ValueError):
                continue
            if not found or not self._usable(found, head):
                continue
            try:
                index = load_index(self.folder / found["index_file"], kind, self.dim,
                                   found["params"])  # fmt: skip
                pairs = np.load(self.folder / found["labels_file"])
            except (StorageError, OSError, ValueError) as exc:
                log.warning("%s: the saved index cannot be used (%s); rebuilding", manifest, exc)
                continue
            if pairs.shape != (index.size, 2):
                continue
            labels = Labels(pairs[:, 0], pairs[:, 1], self.gallery.names_of)
            position = LogPosition(int(found["seq"]), str(found["row"]), str(found["epoch"]))
            stats = IndexStats(kind, index.params(), index.size, "saved", 0.0, str(self.folder))
            return _Live(index, labels, position, position.seq, stats)
        return None

    def _usable(self, found: dict[str, Any], head: LogPosition) -> bool:
        return (
            found.get("format") == FORMAT
            and found.get("model") == self.model_id
            and found.get("dim") == self.dim
            and found.get("epoch") == head.epoch
            and int(found.get("seq", -1)) <= head.seq
            and self.gallery.log_row(int(found["seq"])) == found.get("row")
        )

    def _maybe_save(self, live: _Live) -> None:
        if self.folder is None:
            return
        behind = live.position.seq - live.saved_seq
        if live.pending_removals or behind >= max(64, live.index.size // 100):
            self._save(live)

    def _save(self, live: _Live) -> Path | None:
        manifest = self._manifest_path(live.stats.kind)
        if manifest is None or self.folder is None:
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with _locked(self.folder / ".lock"):
                return self._write(live, self.folder, manifest)
        except (OSError, StorageError) as exc:
            # the index still serves from memory; the next open rebuilds or catches up
            log.warning("cannot save the index in %s: %s", self.folder, exc)
            return None

    def _write(self, live: _Live, folder: Path, manifest: Path) -> Path:
        try:
            newer = json.loads(manifest.read_text()).get("seq", -1) > live.position.seq
        except (OSError, ValueError):
            newer = False
        if newer:  # another process saved a later state: keep theirs
            live.saved_seq = live.position.seq
            return manifest
        stem = f"{_stem(self.model_id, live.stats.kind)}.{live.position.seq}"
        index_file, labels_file = f"{stem}.idx", f"{stem}.labels.npy"
        live.index.save(folder / index_file)
        pairs = np.stack([live.labels.template_ids, live.labels.subject_ids], axis=1)
        atomic_write(folder / labels_file, lambda out: np.save(out, pairs))
        body = {
            "format": FORMAT, "model": self.model_id, "kind": live.stats.kind,
            "dim": self.dim, "params": live.index.params(), "size": live.index.size,
            "seq": live.position.seq, "row": live.position.row, "epoch": live.position.epoch,
            "index_file": index_file, "labels_file": labels_file,
        }  # fmt: skip
        atomic_write(manifest, lambda out: out.write(json.dumps(body, indent=1).encode()))
        for old in folder.glob(_stem(self.model_id, live.stats.kind) + ".*"):
            if old.name not in (manifest.name, index_file, labels_file):
                old.unlink(missing_ok=True)  # older generations (an erased vector with them)
        live.saved_seq = live.position.seq
        live.pending_removals = False
        return manifest


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes saving into one folder (POSIX; elsewhere none)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def refresh_saved(gallery: Gallery, settings: IndexConfig | None = None) -> int:
    """Catch up and rewrite every saved index of ``gallery`` (after an erasure: the erased
    vectors leave the files); returns how many were rewritten."""
    settings = settings or IndexConfig()
    folder = settings.dir if settings.dir is not None else default_folder(gallery)
    if not settings.persist or folder is None or not folder.is_dir():
        return 0
    rewritten = 0
    head = gallery.log_head()
    for manifest in sorted(folder.glob("*.json")):
        try:
            found = json.loads(manifest.read_text())
            model, kind, dim = str(found["model"]), str(found["kind"]), int(found["dim"])
        except (OSError, ValueError, KeyError):
            manifest.unlink(missing_ok=True)
            continue
        if (found.get("seq"), found.get("row"), found.get("epoch")) == (
            head.seq,
            head.row,
            head.epoch,
        ):
            continue  # saved after the erasure already
        pinned = settings.model_copy(update={"kind": kind, "dir": folder})
        try:
            GalleryIndex(gallery, model, dim, pinned).save()
        except StorageError as exc:  # e.g. the gallery was re-embedded with another model
            log.warning("%s: removing a saved index that cannot be caught up (%s)", manifest, exc)
            for stale in folder.glob(manifest.name.removesuffix(".json") + ".*"):
                stale.unlink(missing_ok=True)
            continue
        rewritten += 1
    return rewritten
