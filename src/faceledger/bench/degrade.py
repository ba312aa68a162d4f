"""Seeded, documented degradations of an RGB uint8 image, for ``faceledger bench degraded``.

Every degradation is a pure function of the image, its key (``"Name/7"``) and the level:
the same inputs give the same bytes on every run (noise is drawn from a generator seeded
by a hash of the key and the level's name; JPEG goes through OpenCV's libjpeg).

The steps, applied in a camera's order when a level chains several:

1. ``downscale`` to a target inter-eye distance (IED, pixels): the whole image is scaled by
   ``min(1, target / ied)``, where ``ied`` is measured on the *clean* image's landmarks
   (always YuNet's, cached in ``lfw-det-yunet.npz``, so every profile and the peer see the
   same pixels). Never upscaled: the small image stays small, as a distant face on a
   camera is small, and detectors work on it at native size. Area interpolation (pixel
   binning, what a sensor does).
2. ``dark``: low light, ``255 * (gain * x / 255) ** gamma`` (less light, then the darker
   tone curve of an under-exposed frame), rounded to 8 bits (the lost grey levels are lost).
3. ``blur``: Gaussian, sigma in pixels of the image's current (downscaled) resolution
   (defocus / a soft lens at that distance).
4. ``noise``: additive Gaussian, sigma in 0-255 units (sensor noise), clipped and rounded.
5. ``jpeg``: encode at quality q and decode (compression on the way out of the camera).

LFW's native IED (YuNet landmarks, all 13,233 images): median 43.9 px, 5% 35.0, 95%
51.0 (box width ~2.1 IED). The levels (:data:`LEVELS`) span "fine" (ied32, jpeg30) to
"hopeless" (ied12 + blur, cam-bad); the product's detection gate (faces of 20 px and
more, config ``min_face``) is reached near IED 10.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from types import MappingProxyType

import cv2
import numpy as np

from faceledger.errors import ConfigError
from faceledger.types import ImageArray


@dataclass(frozen=True)
class Level:
    """One named degradation; ``None`` fields are steps it does not take."""

    name: str
    ied: float | None = None
    """Target inter-eye distance in pixels (downscale only, never upscale)."""
    gain: float | None = None
    """Low light: intensity multiplier (with ``gamma``)."""
    gamma: float | None = None
    blur: float | None = None
    """Gaussian blur sigma, pixels at the current resolution."""
    noise: float | None = None
    """Gaussian noise sigma, 0-255 units."""
    jpeg: int | None = None
    """JPEG quality (OpenCV, 0-100)."""
    says: str = ""
    """What the level stands for, in words."""

    def params(self) -> dict[str, float | int]:
        """The steps it takes with their parameters (for reports and cache names)."""
        return {
            k: v for k, v in asdict(self).items() if k not in ("name", "says") and v is not None
        }

    def signature(self) -> str:
        """8 hex digits of the parameters: a cache made with other parameters is not reused."""
        text = json.dumps(self.params(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def describe(self) -> str:
        parts = []
        if self.ied is not None:
            parts.append(f"downscale to IED {self.ied:g} px")
        if self.gain is not None:
            parts.append(f"dark (gain {self.gain:g}, gamma {self.gamma or 1:g})")
        if self.blur is not None:
            parts.append(f"blur sigma {self.blur:g} px")
        if self.noise is not None:
            parts.append(f"noise sigma {self.noise:g}")
        if self.jpeg is not None:
            parts.append(f"JPEG q{self.jpeg}")
        return " -> ".join(parts) or "unchanged"


_GAIN, _GAMMA = 0.35, 1.2
"""Low light: a face of mean grey 120 becomes about 29 (LFW faces: ~100-130)."""

LEVELS: Mapping[str, Level] = MappingProxyType(
    {
        level.name: level
        for level in (
            Level("clean", says="the LFW image as published (IED median 44 px)"),
            Level("ied32", ied=32, says="a face a little smaller than LFW's: fine"),
            Level("ied24", ied=24, says="a face at a few metres on a CCTV camera"),
            Level("ied16", ied=16, says="small: below most vendors' stated minimum"),
            Level("ied12", ied=12, says="tiny: near the detection gate"),
            Level("jpeg30", jpeg=30, says="strong compression"),
            Level("jpeg10", jpeg=10, says="blocky compression"),
            Level("blur1.5", blur=1.5, says="soft focus"),
            Level("blur3", blur=3.0, says="out of focus"),
            Level("noise10", noise=10, says="noisy sensor"),
            Level("noise25", noise=25, says="very noisy sensor"),
            Level("dark", gain=_GAIN, gamma=_GAMMA, says="under-exposed, no noise"),
            Level(
                "dark-noise",
                gain=_GAIN,
                gamma=_GAMMA,
                noise=8,
                says="under-exposed with low-light noise",
            ),
            Level("cam-good", ied=32, blur=1.0, noise=5, jpeg=50, says="a good camera, near"),
            Level(
                "cam-poor", ied=20, blur=1.5, noise=10, jpeg=30, says="a cheap camera, mid range"
            ),
            Level("cam-bad", ied=14, blur=2.0, noise=15, jpeg=20, says="a cheap camera, far"),
        )
    }
)
"""Every level, in report order."""


def select(names: str | Sequence[str] | None) -> list[Level]:
    """The levels named (comma-separated or a list; None: all), in report order."""
    if names is None:
        return list(LEVELS.values())
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    wanted = [n for n in wanted if n]
    unknown = [n for n in wanted if n not in LEVELS]
    if unknown or not wanted:
        raise ConfigError(
            f"unknown degradation level(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from: {', '.join(LEVELS)}"
        )
    return [level for name, level in LEVELS.items() if name in wanted]


def seed_for(key: str, level: str) -> int:
    """The noise seed of one image at one level (a hash of both: stable across runs)."""
    digest = hashlib.sha256(f"{key}|{level}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def downscale(image: ImageArray, ied: float, target: float) -> ImageArray:
    """The whole image scaled by ``min(1, target / ied)`` (area interpolation)."""
    scale = min(1.0, target / max(ied, 1e-6))
    if scale >= 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def dark(image: ImageArray, gain: float, gamma: float = 1.0) -> ImageArray:
    """Low light: ``255 * (gain * x / 255) ** gamma``, rounded."""
    lut = 255.0 * np.power(np.clip(gain * np.arange(256) / 255.0, 0.0, 1.0), gamma)
    table = np.clip(np.rint(lut), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(table[image])


def blur(image: ImageArray, sigma: float) -> ImageArray:
    """Gaussian blur, ``sigma`` in pixels (kernel size chosen by OpenCV from sigma)."""
    return np.ascontiguousarray(cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma))


def noise(image: ImageArray, sigma: float, seed: int) -> ImageArray:
    """Additive Gaussian noise of ``sigma`` (0-255 units), seeded, clipped and rounded."""
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def jpeg(image: ImageArray, quality: int) -> ImageArray:
    """Encode as JPEG at ``quality`` and decode again."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ValueError("JPEG decoding failed")
    rgb = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def apply(image: ImageArray, level: Level, key: str, ied: float) -> ImageArray:
    """``image`` degraded by ``level``; ``ied`` is the clean image's inter-eye distance."""
    out = np.ascontiguousarray(image)
    if level.ied is not None:
        out = downscale(out, ied, level.ied)
    if level.gain is not None:
        out = dark(out, level.gain, level.gamma or 1.0)
    if level.blur is not None:
        out = blur(out, level.blur)
    if level.noise is not None:
        out = noise(out, level.noise, seed_for(key, level.name))
    if level.jpeg is not None:
        out = jpeg(out, level.jpeg)
    return out


def scale_of(level: Level, ied: float) -> float:
    """The factor ``downscale`` applies for a clean IED (1 when the level does not)."""
    return 1.0 if level.ied is None else min(1.0, level.ied / max(ied, 1e-6))


def inter_eye(landmarks: np.ndarray) -> float:
    """Pixels between the two eye landmarks (the first two of five)."""
    marks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    return float(np.hypot(*(marks[1] - marks[0])))
