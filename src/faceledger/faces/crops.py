"""How face crops are stored: the gallery's canonical crops (``templates.crop_png``).

A stored crop is JPEG, quality 92, 4:2:0 chroma (:data:`CROP_FORMAT`), made by OpenCV:
about 0.3 ms and 17 KB (at most ~24 KB) for a 320x320 canonical crop, where Pillow's
default PNG took 23-40 ms and ~100 KB. Re-embedding needs only the aligned pixels plus the
box and landmarks kept beside them (``crop_geometry``): the face is realigned from those,
nothing is detected again. On 200 LFW photos the vectors re-embedded from the JPEG crop
keep a cosine of at least 0.998 (EdgeFace-XXS, MobileFaceNet) and 0.993 (dlib ResNet,
whose shape predictor runs again inside the box) to those from the lossless crop; see
``python -m faceledger.bench.crops``.

:func:`decode_crop` reads a crop by its content, so the PNG crops of older galleries (and
the events' evidence crops) stay readable beside the JPEG ones; :func:`crop_media_type`
names either kind for whoever serves them.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceledger.errors import StorageError
from faceledger.types import ImageArray

JPEG_QUALITY = 92
CROP_FORMAT = f"jpeg-q{JPEG_QUALITY}"
"""What :func:`encode_crop` writes (recorded nowhere: crops are decoded by content)."""

_MAGIC = {
    b"\xff\xd8\xff": "image/jpeg",
    b"\x89PNG\r\n\x1a\n": "image/png",
}
_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]


def encode_crop(rgb: ImageArray) -> bytes:
    """An RGB uint8 crop -> the bytes stored for it (:data:`CROP_FORMAT`)."""
    image = np.ascontiguousarray(rgb, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ValueError(f"a crop is an (H, W, 3) RGB image, not one of shape {image.shape}")
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), _PARAMS)
    if not ok:  # pragma: no cover - OpenCV fails only on impossible inputs
        raise ValueError(f"OpenCV could not encode a crop of shape {image.shape}")
    return bytes(buffer.tobytes())


def crop_media_type(data: bytes) -> str | None:
    """The media type of stored crop bytes, from their magic: ``image/jpeg`` for crops
    stored now, ``image/png`` for older ones, None for bytes that are neither."""
    for magic, media in _MAGIC.items():
        if data.startswith(magic):
            return media
    return None


def decode_crop(data: bytes) -> ImageArray:
    """Stored crop bytes (JPEG now, PNG in older galleries) -> an RGB uint8 array."""
    media = crop_media_type(data)
    if media is None:
        head = bytes(data[:8]).hex(" ") or "nothing"
        raise StorageError(
            f"a stored face crop is neither JPEG nor PNG ({len(data)} bytes starting {head}): "
            "the database's crop is damaged"
        )
    # libjpeg fills a cut-off JPEG with grey and says nothing: its end marker tells.
    cut = media == "image/jpeg" and bytes(data[-2:]) != b"\xff\xd9"
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    bgr = None if cut else cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if bgr is None or bgr.size == 0:
        raise StorageError(
            f"a stored face crop ({len(data)} bytes, {media}) cannot be decoded: "
            "the database's crop is damaged or truncated"
        )
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
