"""Find model files, verify them against their card, and download what is missing.

Resolution order for each card (all of a card's files must come from one place, because
ONNX files may refer to their external-data files by name):

1. an explicit folder given for that model (``Config.model_paths``),
2. the Python package that ships the file (embedded models only),
3. the cache folder (downloads land here; a corrupt cached file is deleted and replaced),
4. the mirror folder (``FACELEDGER_MODEL_MIRROR``),
5. a download from the upstream URL, unless offline.

Every file found is checked against the sha256 on its card; a mismatch in a place the user
chose (explicit folder, mirror) is an error naming the file and both digests.

A card with ``converted`` set (EdgeFace) declares its *source* in ``files``, resolved as
above, and names the file the runtime loads. ``resolve_converted`` makes that file from the
source the first time it is needed (``faceledger.convert``, no PyTorch, a second or so,
announced in one line on stderr); ``faceledger models convert NAME`` makes it on request.
That file cannot carry a pinned sha256 (it depends on the converter), so the conversion
writes a record beside it, ``<converted>.json``, holding the file's sha256 and the sha256
of every source file. ``find_converted`` looks in the explicit folder, the
cache and the mirror, and accepts a file only when it matches its record and the record
names the card's own source files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceledger.errors import ChecksumError, ModelError, ModelNotFoundError
from faceledger.models.catalog import ModelCard, ModelFile

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ResolvedModel:
    card: ModelCard
    paths: Mapping[str, Path]
    """File name -> verified path."""
    origin: str
    """Which place the files came from: explicit, package, cache, mirror or download."""

    def path(self, name: str | None = None) -> Path:
        return self.paths[name or self.card.files[0].name]


ProgressHook = Callable[[str, int, int], None]
"""Called as (file name, bytes done, bytes total or 0) while downloading."""
NoticeHook = Callable[[str], None]
"""Receives the one line that says a model was converted on first use."""


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class ModelStore:
    """Resolves model cards to verified local files."""

    def __init__(
        self,
        cache_dir: Path,
        mirror: Path | None = None,
        explicit: Mapping[str, Path] | None = None,
        offline: bool = False,
        progress: ProgressHook | None = None,
        *,
        notice: NoticeHook | None = _to_stderr,
        convert_on_use: bool = True,
    ) -> None:
        """``convert_on_use``: make a missing converted file from its source when it is
        resolved (announced through ``notice``), rather than raise."""
        self.cache_dir = cache_dir
        self.mirror = mirror
        self.explicit = dict(explicit or {})
        self.offline = offline
        self.progress = progress
        self.notice = notice
        self.convert_on_use = convert_on_use

    def candidates(self, card: ModelCard) -> list[tuple[str, Path | None]]:
        """The places searched for ``card``, in order, as (origin, folder)."""
        places: list[tuple[str, Path | None]] = []
        if card.name in self.explicit:
            places.append(("explicit", self.explicit[card.name]))
        package = card.files[0].package
        if package:
            places.append(("package", _package_models_dir(package)))
        places.append(("cache", self.cache_dir))
        places.append(("mirror", self.mirror))
        return places

    def find(self, card: ModelCard) -> ResolvedModel | None:
        """Verified files already on disk, or ``None``; never downloads."""
        for origin, folder in self.candidates(card):
            if folder is None or not all((folder / f.name).is_file() for f in card.files):
                continue
            paths = {f.name: folder / f.name for f in card.files}
            if self._verify(card, paths, origin):
                return ResolvedModel(card, paths, origin)
        return None

    def resolve(self, card: ModelCard) -> ResolvedModel:
        """Verified local files for ``card``, downloading them if allowed."""
        found = self.find(card)
        if found is not None:
            return found
        if self.offline or any(f.url is None for f in card.files):
            raise ModelNotFoundError(self._not_found_message(card))
        return self._download(card)

    # ---- converted models ---------------------------------------------------------------

    def find_converted(self, card: ModelCard) -> Path | None:
        """The verified converted file for ``card``, or ``None`` if it was never converted.

        A file converted from other source files than the card's (an older card) counts as
        absent; a file that no longer matches its own record raises ``ChecksumError``.
        """
        if not card.converted:
            raise ModelError(f"model {card.name} is used as published; it has no converted file")
        for _origin, folder in self._converted_places(card):
            if folder is None:
                continue
            path = folder / card.converted
            if not path.is_file():
                continue
            record = read_conversion_record(path)
            if record is None:
                continue
            if record.get("source") != _source_digests(card):
                log.info("%s was converted from other source files; ignoring it", path)
                continue
            actual = sha256_file(path)
            if actual != record.get("sha256"):
                raise ChecksumError(
                    f"model {card.name}: {path} has sha256 {actual}, but its conversion record "
                    f"says {record.get('sha256')}. Remove it and run: faceledger models convert "
                    f"{card.name}"
                )
            return path
        return None

    def resolve_converted(self, card: ModelCard) -> Path:
        """The verified converted file for ``card``, made from its source now if it is
        missing (and ``convert_on_use``); raises saying what is missing."""
        found = self.find_converted(card)
        if found is not None:
            return found
        if not self.convert_on_use:
            raise ModelNotFoundError(self._not_converted_message(card))
        try:
            self.resolve(card)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(
                f"model {card.name} runs from {card.converted}, made locally from "
                f"{', '.join(f.name for f in card.files)}, which is not here: {exc}"
            ) from exc
        return self.convert_now(card)

    def convert_now(self, card: ModelCard) -> Path:
        """Make ``card``'s converted file from its (verified) source, unless another process
        just did; announce it in one line. Returns the verified file."""
        from faceledger.convert import ensure_converted

        started = time.perf_counter()
        made: list[str] = []
        try:
            path = ensure_converted(card, self, say=made.append)
        except OSError as exc:
            raise ModelError(
                f"model {card.name}: cannot write its converted file {card.converted} into "
                f"the model cache {self.cache_dir} ({exc})"
            ) from exc
        if made and self.notice is not None:
            self.notice(
                f"faceledger: converted {card.files[0].name} to {path} "
                f"({time.perf_counter() - started:.1f} s, once, for model {card.name})"
            )
        return path

    def _not_converted_message(self, card: ModelCard) -> str:
        looked = "; ".join(
            f"{origin}: {folder}" for origin, folder in self._converted_places(card) if folder
        )
        return (
            f"model {card.name} has not been converted: {card.converted} (with its record "
            f"{card.converted}.json) is not in {looked}. It is made locally from "
            f"{', '.join(f.name for f in card.files)}; run: faceledger models convert "
            f"{card.name}"
        )

    def runtime_path(self, card: ModelCard) -> Path:
        """The file an inference session loads: the converted file if the card has one."""
        return self.resolve_converted(card) if card.converted else self.resolve(card).path()

    def conversion_target(self, card: ModelCard) -> Path:
        """Where ``faceledger models convert`` writes ``card``'s converted file."""
        if not card.converted:
            raise ModelError(f"model {card.name} is used as published; it needs no conversion")
        return self.cache_dir / card.converted

    def record_conversion(self, card: ModelCard, path: Path, details: Mapping[str, Any]) -> str:
        """Write the record beside a freshly converted file; returns the file's sha256."""
        digest = sha256_file(path)
        record = {
            "model": card.name,
            "file": path.name,
            "sha256": digest,
            "source": _source_digests(card),
            **details,
        }
        target = conversion_record_path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(target)
        return digest

    def _converted_places(self, card: ModelCard) -> list[tuple[str, Path | None]]:
        return [(o, f) for o, f in self.candidates(card) if o != "package"]

    def _verify(self, card: ModelCard, paths: Mapping[str, Path], origin: str) -> bool:
        for f in card.files:
            actual = sha256_file(paths[f.name])
            if actual == f.sha256:
                continue
            if origin == "cache":
                log.warning("cached %s is corrupt (sha256 %s); fetching it again", f.name, actual)
                paths[f.name].unlink(missing_ok=True)
                return False
            raise ChecksumError(
                f"model {card.name}: {paths[f.name]} has sha256 {actual}, but the model card "
                f"expects {f.sha256}. Replace the file with the published one or remove it."
            )
        return True

    def _not_found_message(self, card: ModelCard) -> str:
        looked = []
        for origin, folder in self.candidates(card):
            if folder is None:
                hint = " (FACELEDGER_MODEL_MIRROR is not set)" if origin == "mirror" else ""
                looked.append(f"{origin}: not configured{hint}")
            else:
                looked.append(f"{origin}: {folder}")
        names = ", ".join(f.name for f in card.files)
        why = "offline mode is on" if self.offline else "it has no download address"
        return (
            f"model {card.name} ({names}) was not found and cannot be downloaded ({why}). "
            f"Looked in: {'; '.join(looked)}. Put the files in one of those folders, or set "
            "FACELEDGER_MODEL_MIRROR to a folder that holds them."
        )

    def _download(self, card: ModelCard) -> ResolvedModel:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for f in card.files:
            target = self.cache_dir / f.name
            if not (target.is_file() and sha256_file(target) == f.sha256):
                self._fetch(card, f, target)
            paths[f.name] = target
        return ResolvedModel(card, paths, "download")

    def _fetch(self, card: ModelCard, f: ModelFile, target: Path) -> None:
        if f.url is None:
            raise ModelNotFoundError(f"model {card.name}: {f.name} has no download address")
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{f.name}.")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(f.url, timeout=60) as resp:
                total = int(resp.headers.get("Content-Length") or 0)
                done = 0
                for block in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if self.progress:
                        self.progress(f.name, done, total)
            if digest.hexdigest() != f.sha256:
                raise ChecksumError(
                    f"model {card.name}: download of {f.url} has sha256 {digest.hexdigest()}, "
                    f"expected {f.sha256}; nothing was kept"
                )
            tmp.replace(target)
        except OSError as exc:
            raise ModelError(
                f"model {card.name}: could not download {f.url} ({exc}); set "
                "FACELEDGER_MODEL_MIRROR to a folder holding the file to work offline"
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)


def _source_digests(card: ModelCard) -> dict[str, str]:
    return {f.name: f.sha256 for f in card.files}


def conversion_record_path(converted: Path) -> Path:
    """Where the record of a converted file lives: beside it, named ``<file>.json``."""
    return converted.with_name(converted.name + ".json")


def read_conversion_record(converted: Path) -> dict[str, Any] | None:
    """The record written beside a converted file, or ``None`` when there is none."""
    path = conversion_record_path(converted)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable conversion record ({exc})") from exc
    return record if isinstance(record, dict) else None


def _package_models_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def copy_into(resolved: ResolvedModel, folder: Path) -> None:
    """Copy a resolved model's files into ``folder`` (used by ``models pull``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in resolved.paths.items():
        if path.parent.resolve() != folder.resolve():
            shutil.copy2(path, folder / name)
