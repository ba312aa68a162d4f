"""Redaction's files: the input and output names checked, the output written beside its
final name under a hidden temporary name (moved into place only when finished)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from faceledger.errors import ConfigError, InputError
from faceledger.images import IMAGE_SUFFIXES


def check_paths(src: Path, dst: Path, force: bool, want_image: bool) -> None:
    """Refuse, before any work, an input that is not a file, an output that would replace
    the input or an existing file (without ``force``), or the wrong kind of output name."""
    if not src.exists():
        raise InputError(str(src), "no such file")
    if src.is_dir():
        raise InputError(str(src), "is a folder, not a file")
    if dst.resolve() == src.resolve() or (dst.exists() and os.path.samefile(dst, src)):
        raise ConfigError(f"{dst}: the output would overwrite the input; choose another -o")
    if dst.is_dir():
        raise ConfigError(f"{dst}: is a folder; give the output file's name")
    if dst.exists() and not force:
        raise ConfigError(f"{dst}: already exists; pass --force to replace it")
    if not dst.parent.is_dir():
        raise InputError(str(dst), f"cannot write: the folder {dst.parent} does not exist")
    is_image = dst.suffix.lower() in IMAGE_SUFFIXES
    if want_image and not is_image:
        raise ConfigError(
            f"{dst}: a photo's redacted copy must be an image file "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if not want_image and is_image:
        raise ConfigError(f"{dst}: a video's redacted copy must be a video file (e.g. .mp4, .mkv)")


def temp_beside(dst: Path) -> Path:
    """Create (exclusively) a hidden file beside ``dst`` with the same extension."""
    for _ in range(100):
        tmp = dst.with_name(f".{dst.stem}.partial-{secrets.token_hex(4)}{dst.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise InputError(str(dst), f"cannot write here ({exc.strerror or exc})") from None
        os.close(fd)
        return tmp
    raise InputError(str(dst), "cannot create a temporary file beside it")


def unlink(path: Path) -> None:
    """Remove ``path`` if it is there."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
