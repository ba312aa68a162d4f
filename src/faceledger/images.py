"""Reading still images safely: size limits, EXIF orientation, every pixel format -> RGB uint8.

What an image may cost is checked from its header, before any pixel is decoded:

- its file size (``max_bytes``) and its pixels (``max_pixels``);
- its format: only those faceledger needs (:func:`accepted_formats`: JPEG, PNG, WebP, BMP,
  TIFF, GIF, PPM/PGM, and HEIC/HEIF where the ``pillow_heif`` plugin is installed); any
  other (EPS, PSD, ICO ...) is named and refused without its decoder or parser running;
- the memory decoding takes (``max_decode_bytes``, :func:`decode_cost`): the decoded pixels
  in the mode the file gives (16-bit and multi-channel modes take 2 or 4 bytes a pixel),
  plus the larger of their rotated copy (EXIF orientation) and the RGB uint8 array made
  from them (converted a strip of rows at a time, so no other full-size copy exists);
- and how many decodes run at once: the process-wide :data:`DECODES` gate lets decodes
  start while the costs of those running sum to at most ``decode_budget_total``, in order
  of arrival, so that N requests cannot multiply the cost of one.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib.util import find_spec
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


MAX_DECODE_BYTES = 500_000_000
"""Default ``max_decode_bytes`` (:func:`decode_cost`): colour (RGB, RGBA, CMYK: 8 bytes a
pixel) up to 62 Mpx, so every such image under the default ``max_pixels`` (60 Mpx); 16-bit
grey (5 bytes) up to 100 Mpx; progressive JPEG (10 bytes) up to 50 Mpx; WebP (16 bytes) up
to 31 Mpx."""
DECODE_BUDGET_TOTAL = 1_000_000_000
"""Default ``decode_budget_total``: two of the largest decodes at once, or many small ones."""

_FORMAT_NAMES = {
    "JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "TIFF": "TIFF",
    "GIF": "GIF", "PPM": "PPM/PGM", "HEIF": "HEIC/HEIF",
}  # fmt: skip
"""Pillow's names of the formats faceledger reads (HEIF only with pillow_heif), and ours."""
_STRIP_PIXELS = 1 << 18
"""Pixels converted to RGB at a time (bounds the working copies of :func:`to_rgb`)."""
_STRIP_BYTES_PER_PIXEL = 32
"""Bytes a pixel of one strip's copies take at most (float64 for 16-bit grey, four RGBA
copies for alpha compositing)."""
_DECODE_FIXED = 4 << 20
"""Bytes any decode may take whatever its size (the decoders' own buffers: zlib's window,
row buffers)."""


@cache
def accepted_formats() -> tuple[str, ...]:
    """Pillow format names :func:`load_image` opens; the HEIF opener is registered on first
    use, where ``pillow_heif`` is importable."""
    formats = [f for f in _FORMAT_NAMES if f != "HEIF"]
    if find_spec("pillow_heif") is not None:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        formats.append("HEIF")
    return tuple(formats)


def _accepted_text() -> str:
    names = [_FORMAT_NAMES[f] for f in accepted_formats()]
    return ", ".join(names[:-1]) + " or " + names[-1]


def sniff_format(prefix: bytes) -> str | None:
    """The Pillow format whose signature ``prefix`` (a file's first 16 bytes) carries, by
    the plugins' signature checks alone: no parser or decoder runs."""
    Image.init()
    for name, (_factory, accept) in Image.OPEN.items():
        try:
            if accept is not None and accept(prefix):
                return name
        except Exception:  # a plugin's check on hostile bytes; not knowing is fine
            continue
    return None


def stored_bytes_per_pixel(mode: str) -> int:
    """Bytes a pixel takes in memory once Pillow has decoded it in ``mode``."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4  # I, F and every multi-band mode (RGB too: Pillow pads it to 4 bytes)


def decoder_bytes(img: Image.Image, file_bytes: int) -> int:
    """Bytes the format's decoder holds beside the image while it decodes (measured with
    Pillow 13): a progressive JPEG keeps every DCT coefficient (2 bytes a band), WebP three
    frame copies, TIFF one strip of raw samples and its compressed bytes (each may be the
    whole image: at most the file)."""
    pixels = img.size[0] * img.size[1]
    if img.format in ("JPEG", "MPO") and img.info.get("progressive"):
        return pixels * 2 * len(img.getbands())
    if img.format == "WEBP":
        return pixels * 12
    if img.format == "TIFF":
        bits = getattr(img, "tag_v2", {}).get(258, (8,))
        raw = -(-sum(bits if isinstance(bits, tuple) else (bits,)) // 8)
        return pixels * raw + file_bytes
    if img.format == "HEIF":
        return pixels * stored_bytes_per_pixel(img.mode)
    return 0


def decode_cost(img: Image.Image, file_bytes: int = 0) -> int:
    """Bytes :func:`load_image` holds at its peak decoding ``img`` (header read, from a
    file of ``file_bytes``): the decoded pixels, plus the largest of what the decoder holds
    beside them, their rotated copy and the RGB array; plus one strip's working copies and
    the decoder's own buffers."""
    pixels = img.size[0] * img.size[1]
    stored = pixels * stored_bytes_per_pixel(img.mode)
    beside = max(decoder_bytes(img, file_bytes), stored, pixels * 3)
    strip = min(pixels, _STRIP_PIXELS) * _STRIP_BYTES_PER_PIXEL
    return stored + beside + strip + _DECODE_FIXED


class DecodeGate:
    """Process-wide admission of decodes by their cost: one waits (in order of arrival)
    while the costs of those running plus its own exceed the caller's total; a decode
    alone always runs."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._queue: deque[object] = deque()
        self.in_use = 0
        """Bytes the decodes running now may hold (the sum of their costs)."""
        self.running = 0
        """Decodes running now."""

    @property
    def waiting(self) -> int:
        """Decodes waiting for their turn."""
        with self._changed:
            return len(self._queue)

    @contextmanager
    def hold(self, cost: int, total: int) -> Iterator[None]:
        """Run the block once ``cost`` bytes fit beside the running decodes under
        ``total``, and every decode that came earlier has started."""
        ticket = object()
        with self._changed:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or (self.running and self.in_use + cost > total):
                    self._changed.wait()
            finally:  # started, or interrupted while waiting: out of the queue either way
                self._queue.remove(ticket)
                self._changed.notify_all()
            self.in_use += cost
            self.running += 1
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= cost
                self.running -= 1
                self._changed.notify_all()


DECODES = DecodeGate()
"""The one gate every :func:`load_image` of this process goes through."""


def load_image(
    src: ImageSource,
    max_pixels: int,
    max_bytes: int,
    *,
    max_decode_bytes: int = MAX_DECODE_BYTES,
    decode_budget_total: int = DECODE_BUDGET_TOTAL,
) -> ImageArray:
    """Decode ``src`` to an upright RGB uint8 array or raise InputError naming why; limits
    as in the module's notes (``Config`` has each of them)."""
    name = str(src)
    size = _byte_size(src, name)
    if size > max_bytes:
        raise InputError(name, f"file is {size:,} bytes, over the limit of {max_bytes:,}")
    try:
        with _open(src, name) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise InputError(
                    name, f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}"
                )
            cost = decode_cost(img, size)
            if cost > max_decode_bytes:
                raise InputError(
                    name,
                    f"image is {w}x{h} pixels of mode {img.mode}: decoding it takes "
                    f"{cost:,} bytes of memory, over the limit of {max_decode_bytes:,}",
                )
            with DECODES.hold(cost, decode_budget_total):
                return _decode(img)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(name, "not an image file (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(name, f"refused as a decompression bomb ({exc})") from None
    except Exception as exc:  # decoders of untrusted files raise many types; none may escape
        raise InputError(name, f"cannot decode image: {exc}") from None


def _byte_size(src: ImageSource, name: str) -> int:
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
    return size


def _open(src: ImageSource, name: str) -> Image.Image:
    """Pillow's image of ``src``, header read, pixels not; only accepted formats are tried,
    and a file of another is refused naming its format."""
    try:
        return Image.open(
            io.BytesIO(src.data) if isinstance(src, Blob) else src, formats=accepted_formats()
        )
    except UnidentifiedImageError:
        found = sniff_format(_prefix(src))
        if found is None or found in accepted_formats():
            raise
        reason = f"{found} images are not accepted; give {_accepted_text()}"
        raise InputError(name, reason) from None


def _prefix(src: ImageSource) -> bytes:
    if isinstance(src, Blob):
        return src.data[:16]
    with src.open("rb") as handle:
        return handle.read(16)


def _decode(img: Image.Image) -> ImageArray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img.load()
    ImageOps.exif_transpose(img, in_place=True)
    return to_rgb(img)


def to_rgb(img: Image.Image) -> ImageArray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB; 16-bit scaled down, alpha composited on white.

    Converted a strip of rows at a time into the one output array, so that beside the
    decoded image only that array (3 bytes a pixel) and one strip's copies exist."""
    w, h = img.size
    out = np.empty((h, w, 3), dtype=np.uint8)
    top = _gray_top(img)
    rows = max(1, _STRIP_PIXELS // max(1, w))
    for y in range(0, h, rows):
        strip = img.crop((0, y, w, min(h, y + rows)))
        out[y : y + rows] = _strip_to_rgb(strip, top)
    return out


_WIDE_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _gray_top(img: Image.Image) -> float:
    """The value that becomes 255 in a 16/32-bit grey image (0 for other modes): 65535 for
    16-bit files, and for 32-bit ones whose values go past 255; else 255."""
    if img.mode not in _WIDE_GRAY:
        return 0.0
    if img.mode.startswith("I;16"):
        return 65535.0
    extrema = img.getextrema()
    high = extrema[1] if isinstance(extrema[1], (int, float)) else 0
    return 65535.0 if high > 255 else 255.0


def _strip_to_rgb(img: Image.Image, top: float) -> ImageArray:
    if img.mode in _WIDE_GRAY:
        arr = np.asarray(img, dtype=np.float64)
        gray = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


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
