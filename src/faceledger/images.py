"""Reading still images safely: size limits, EXIF orientation, every pixel format -> RGB uint8."""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceledger.errors import InputError
from faceledger.types import ImageArray

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".jfif", ".pgm", ".ppm"}
)


@dataclass(frozen=True)
class Blob:
    """An image held in memory (an upload), named for messages."""

    name: str
    data: bytes = field(repr=False)

    def __str__(self) -> str:
        return self.name


ImageSource = Path | Blob
"""Where an image comes from: a file, or bytes in memory."""


def sha256_of(src: ImageSource) -> str:
    """Hex sha256 of the image's bytes (what the ledger records instead of the image)."""
    if isinstance(src, Blob):
        return hashlib.sha256(src.data).hexdigest()
    digest = hashlib.sha256()
    with src.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_image(src: ImageSource, max_pixels: int, max_bytes: int) -> ImageArray:
    """Decode ``src`` to an upright RGB uint8 array or raise InputError naming why."""
    name = str(src)
    if isinstance(src, Blob):
        size = len(src.data)
    else:
        if not src.exists():
            raise InputError(name, "no such file")
        if src.is_dir():
            raise InputError(name, "is a folder, not an image file")
        size = src.stat().st_size
    if size == 0:
        raise InputError(name, "empty file (0 bytes)")
    if size > max_bytes:
        raise InputError(name, f"file is {size:,} bytes, over the limit of {max_bytes:,}")
    try:
        with Image.open(io.BytesIO(src.data) if isinstance(src, Blob) else src) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise InputError(
                    name, f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}"
                )
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img.load()
            return to_rgb(ImageOps.exif_transpose(img))
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(name, "not an image file (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(name, f"refused as a decompression bomb ({exc})") from None
    except Exception as exc:  # decoders of untrusted files raise many types; none may escape
        raise InputError(name, f"cannot decode image: {exc}") from None


def to_rgb(img: Image.Image) -> ImageArray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB; 16-bit scaled down, alpha composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def collect_images(paths: Iterable[Path]) -> Iterator[Path]:
    """Expand folders (recursively, sorted) into image files; files are passed through as given.

    A path that does not exist is passed through so that loading reports it.
    """
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            yield path


def save_image(image: ImageArray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
