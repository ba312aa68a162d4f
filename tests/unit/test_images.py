"""load_image / collect_images on real and hand-made files.

Every bad input is generated in tmp_path (most from a real photo of the smoke set); each must
be refused with an InputError that names the file and says why, never with another type.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from faceledger.errors import InputError
from faceledger.images import collect_images, load_image

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PHOTO = SHARED / "datasets" / "smoke" / "identities" / "fr_obama" / "face_recognition_obama.jpg"

MAX_PIXELS = 50_000_000
MAX_BYTES = 50_000_000


@pytest.fixture
def photo() -> Path:
    if not PHOTO.is_file():
        pytest.skip(f"{PHOTO} is absent: these tests build their inputs from a shared smoke photo")
    return PHOTO


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@cache
def _blank_1bit_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG, built row by row so that it never exists in memory whole."""
    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed bits
    rows_per_block = max(1, 4_000_000 // len(row))
    comp = zlib.compressobj(9)
    idat = bytearray()
    for start in range(0, height, rows_per_block):
        idat += comp.compress(row * min(rows_per_block, height - start))
    idat += comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", bytes(idat))
        + _chunk(b"IEND", b"")
    )


def write_blank_1bit_png(path: Path, width: int, height: int) -> Path:
    path.write_bytes(_blank_1bit_png(width, height))
    return path


# ---- bad inputs -------------------------------------------------------------------------

Builder = Callable[[Path, Callable[[], Path]], tuple[Path, int, int]]
"""(tmp_path, photo getter) -> (path, max_pixels, max_bytes)."""


def _empty(tmp: Path, _photo: Callable[[], Path]) -> tuple[Path, int, int]:
    path = tmp / "empty.jpg"
    path.write_bytes(b"")
    return path, MAX_PIXELS, MAX_BYTES


def _truncated(tmp: Path, photo: Callable[[], Path]) -> tuple[Path, int, int]:
    data = photo().read_bytes()
    path = tmp / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path, MAX_PIXELS, MAX_BYTES


def _text(tmp: Path, _photo: Callable[[], Path]) -> tuple[Path, int, int]:
    path = tmp / "notes.jpg"
    path.write_text("this is a shopping list, not a photo\n" * 20)
    return path, MAX_PIXELS, MAX_BYTES


def _missing(tmp: Path, _photo: Callable[[], Path]) -> tuple[Path, int, int]:
    return tmp / "does-not-exist.jpg", MAX_PIXELS, MAX_BYTES


def _folder(tmp: Path, _photo: Callable[[], Path]) -> tuple[Path, int, int]:
    path = tmp / "album.jpg"
    path.mkdir()
    return path, MAX_PIXELS, MAX_BYTES


def _over_pixels(tmp: Path, _photo: Callable[[], Path]) -> tuple[Path, int, int]:
    # 64 Mpx: under Pillow's own bomb guard (~89 Mpx), so only our limit can refuse it.
    return write_blank_1bit_png(tmp / "big.png", 8000, 8000), MAX_PIXELS, MAX_BYTES


def _bomb(tmp: Path, _photo: Callable[[], Path]) -> tuple[Path, int, int]:
    # 400 Mpx in a few tens of KB on disk.
    return write_blank_1bit_png(tmp / "bomb.png", 20000, 20000), MAX_PIXELS, MAX_BYTES


def _over_bytes(tmp: Path, photo: Callable[[], Path]) -> tuple[Path, int, int]:
    path = tmp / "large.jpg"
    shutil.copyfile(photo(), path)
    return path, MAX_PIXELS, 100_000


BAD_INPUTS: list[tuple[str, Builder, str]] = [
    ("empty file", _empty, "empty file"),
    ("truncated jpeg", _truncated, "cannot decode image"),
    ("text named .jpg", _text, "not an image file"),
    ("missing path", _missing, "no such file"),
    ("folder", _folder, "is a folder"),
    (
        "over pixel limit",
        _over_pixels,
        "8000x8000 = 64,000,000 pixels, over the limit of 50,000,000",
    ),
    ("decompression bomb", _bomb, "decompression bomb"),
    ("over byte limit", _over_bytes, "over the limit of 100,000"),
]


@pytest.mark.parametrize(
    ("builder", "reason"),
    [pytest.param(b, r, id=case) for case, b, r in BAD_INPUTS],
)
def test_bad_input_raises_input_error_naming_file_and_reason(
    tmp_path: Path, request: pytest.FixtureRequest, builder: Builder, reason: str
) -> None:
    path, max_pixels, max_bytes = builder(tmp_path, lambda: request.getfixturevalue("photo"))
    with pytest.raises(InputError) as info:
        load_image(path, max_pixels, max_bytes)
    err = info.value
    assert err.source == str(path)
    assert reason in err.reason
    assert str(path) in str(err)


@pytest.mark.parametrize(("size", "max_pixels"), [(8000, MAX_PIXELS), (20000, MAX_PIXELS)])
def test_oversized_image_is_refused_before_pixels_are_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, max_pixels: int
) -> None:
    path = write_blank_1bit_png(tmp_path / "huge.png", size, size)
    assert path.stat().st_size < 1_000_000  # small on disk: only the header says how big it is
    decoded: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def spy_load(self: ImageFile.ImageFile):  # type: ignore[no-untyped-def]
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    with pytest.raises(InputError, match="pixels"):
        load_image(path, max_pixels, MAX_BYTES)
    assert decoded == [], "pixels were decoded before the size check refused the image"

    # control: the spy does see decoding of an image that passes the check
    small = write_blank_1bit_png(tmp_path / "small.png", 64, 64)
    assert load_image(small, max_pixels, MAX_BYTES).shape == (64, 64, 3)
    assert decoded and set(decoded) == {(64, 64)}


def test_pillow_own_bomb_guard_still_refuses_when_our_limit_is_higher(tmp_path: Path) -> None:
    path = write_blank_1bit_png(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(InputError) as info:
        load_image(path, max_pixels=10**9, max_bytes=MAX_BYTES)
    assert "decompression bomb" in info.value.reason


def test_limits_are_inclusive(tmp_path: Path, photo: Path) -> None:
    size = photo.stat().st_size
    with Image.open(photo) as img:
        w, h = img.size
    image = load_image(photo, max_pixels=w * h, max_bytes=size)
    assert image.shape == (h, w, 3)


# ---- formats that must load -------------------------------------------------------------


def _load(path: Path) -> np.ndarray:
    image = load_image(path, MAX_PIXELS, MAX_BYTES)
    assert image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[2] == 3
    assert image.flags["C_CONTIGUOUS"]
    return image


def test_real_jpeg_loads_as_rgb(photo: Path) -> None:
    image = _load(photo)
    with Image.open(photo) as img:
        assert image.shape == (img.size[1], img.size[0], 3)
        np.testing.assert_array_equal(image, np.asarray(img.convert("RGB")))


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 200, 257, 32768], [40000, 65280, 65535, 1000]], dtype=np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # really stored and read back as 16-bit
    image = _load(path)
    assert image.shape == (2, 4, 3)
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    expected = values.astype(np.float64) * 255.0 / 65535.0
    assert np.abs(image[..., 0].astype(np.float64) - expected).max() <= 1.0
    assert abs(int(image[0, 3, 0]) - 128) <= 1  # mid-grey stays mid-grey
    assert image[0, 1, 0] <= 1  # a dark value stays dark (not read as 8-bit 200)
    assert image[1, 2, 0] == 255


def test_dark_16bit_image_is_not_mistaken_for_8bit(tmp_path: Path) -> None:
    values = np.full((3, 3), 250, dtype=np.uint16)  # every value <= 255, yet 16-bit: near black
    path = tmp_path / "dark16.png"
    Image.fromarray(values).save(path)
    assert int(_load(path).max()) <= 1


def test_8bit_grayscale_is_replicated_to_three_channels(tmp_path: Path) -> None:
    values = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    path = tmp_path / "gray8.png"
    Image.fromarray(values, mode="L").save(path)
    image = _load(path)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], values)


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 255, 0)  # fully transparent blue -> white
    rgba[1, 0] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    rgba[1, 1] = (10, 200, 30, 255)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    image = _load(path)
    np.testing.assert_array_equal(image[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(image[0, 1], (255, 255, 255))
    assert np.all(np.abs(image[1, 0].astype(int) - 127) <= 1)
    np.testing.assert_array_equal(image[1, 1], (10, 200, 30))


def test_palette_png_maps_through_palette(tmp_path: Path) -> None:
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2])
    path = tmp_path / "palette.png"
    img.save(path)
    with Image.open(path) as check:
        assert check.mode == "P"
    np.testing.assert_array_equal(_load(path)[0], [(255, 0, 0), (0, 255, 0), (0, 0, 255)])


def test_palette_png_with_transparent_index_is_white(tmp_path: Path) -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    img.putdata([0, 1])
    path = tmp_path / "palette-transparent.png"
    img.save(path, transparency=0)
    np.testing.assert_array_equal(_load(path)[0], [(255, 255, 255), (0, 255, 0)])


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16"])
def test_real_photo_in_other_pixel_formats(tmp_path: Path, photo: Path, mode: str) -> None:
    with Image.open(photo) as img:
        rgb = img.convert("RGB").reduce(2)  # half size: same content, faster to quantize
    reference = np.asarray(rgb).astype(np.int16)
    if mode == "L":
        converted = rgb.convert("L")
        reference = np.repeat(np.asarray(converted)[:, :, None], 3, axis=2).astype(np.int16)
        tolerance = 0.5
    elif mode == "P":
        converted = rgb.quantize(256)
        tolerance = 12.0
    elif mode == "RGBA":
        converted = rgb.convert("RGBA")
        tolerance = 0.0
    else:
        gray = np.asarray(rgb.convert("L")).astype(np.uint16) * 257
        converted = Image.fromarray(gray)
        reference = np.repeat((gray // 257)[:, :, None], 3, axis=2).astype(np.int16)
        tolerance = 0.5
    path = tmp_path / f"photo-{mode.replace(';', '')}.png"
    converted.save(path, compress_level=1)
    image = _load(path)
    assert image.shape == reference.shape
    assert np.abs(image.astype(np.int16) - reference).mean() <= tolerance


def test_exif_rotated_jpeg_is_returned_upright(tmp_path: Path, photo: Path) -> None:
    upright = _load(photo)
    h, w = upright.shape[:2]
    assert h != w
    # Store the pixels turned 90° counter-clockwise; Orientation 6 says "turn 90° clockwise
    # to display", which undoes it.
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, quality=95, exif=exif)
    with Image.open(path) as raw:
        assert raw.size == (h, w)  # on disk it really is sideways
        assert raw.getexif().get(0x0112) == 6

    image = _load(path)
    assert image.shape == upright.shape
    diff = np.abs(image.astype(np.int16) - upright.astype(np.int16))
    assert diff.mean() < 3.0
    # and it is clearly closer than the sideways-flipped alternatives would be
    wrong = np.rot90(np.rot90(upright))  # 180°: same shape, wrong way up
    assert np.abs(image.astype(np.int16) - wrong.astype(np.int16)).mean() > 10 * diff.mean()


# ---- collect_images ---------------------------------------------------------------------


def test_collect_images_expands_folders_recursively_and_sorted(tmp_path: Path) -> None:
    album = tmp_path / "album"
    (album / "b" / "deep").mkdir(parents=True)
    (album / "a").mkdir()
    wanted = [
        album / "a" / "2.PNG",
        album / "a" / "x.jpeg",
        album / "b" / "deep" / "1.webp",
        album / "top.jpg",
    ]
    for path in wanted:
        path.write_bytes(b"x")
    (album / "notes.txt").write_text("no")
    (album / "a" / "README").write_text("no")
    (album / "folder.jpg").mkdir()  # a folder with an image suffix is not a file

    single = tmp_path / "single.txt"  # given explicitly: passed through whatever its suffix
    missing = tmp_path / "missing.jpg"
    got = list(collect_images([album, single, missing]))
    assert got == [*sorted(wanted), single, missing]


def test_collect_images_of_empty_folder_is_empty(tmp_path: Path) -> None:
    assert list(collect_images([tmp_path])) == []
