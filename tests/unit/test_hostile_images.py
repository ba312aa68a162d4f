"""Hostile images (issue 13, "Requests and inputs"): pixel-limit amplification, formats
faceledger does not need, and many large decodes at once.

Memory is measured on this process: ``/proc/self/clear_refs`` resets the peak resident
size (``VmHWM``) to the current one, so the peak growth of one call can be read after it.
The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageFile

from faceledger import images
from faceledger.config import load_config
from faceledger.errors import ConfigError, InputError
from faceledger.images import Blob, DecodeGate, decode_cost, load_image

MAX_PIXELS = 60_000_000
MAX_BYTES = 100_000_000
MB = 1_000_000
HOSTILE_SIDE = 7745
"""The issue's 16-bit PNG: 7745 x 7745, just under the 60 Mpx limit, 117 KB on disk."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def gray16_png(width: int, height: int) -> bytes:
    """An all-black 16-bit greyscale PNG, compressed row block by row block (the pixels
    never exist in memory whole)."""
    row = bytes(1 + 2 * width)  # filter byte 0 + big-endian 16-bit samples
    per_block = max(1, 4_000_000 // len(row))
    comp = zlib.compressobj(9)
    idat = bytearray()
    for start in range(0, height, per_block):
        idat += comp.compress(row * min(per_block, height - start))
    idat += comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", bytes(idat))
        + _chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def hostile_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "gray16-7745.png"
    path.write_bytes(gray16_png(HOSTILE_SIDE, HOSTILE_SIDE))
    return path


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def peak_growth(call: Callable[[], Any]) -> tuple[int, float]:
    """(bytes the peak resident size grew by during ``call()``, seconds it took); what it
    returns is dropped, what it raises propagates."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure memory")
    Path("/proc/self/clear_refs").write_text("5")
    before = rss_kb("VmRSS")
    started = time.perf_counter()
    try:
        call()
    finally:
        seconds = time.perf_counter() - started
        growth = (rss_kb("VmHWM") - before) * 1024
    return growth, seconds


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str | None, tuple[int, int]]]:
    """(format, size) of every image whose pixels Pillow decodes from now on."""
    seen: list[tuple[str | None, tuple[int, int]]] = []
    real_load = ImageFile.ImageFile.load

    def spy_load(self: ImageFile.ImageFile) -> Any:
        seen.append((self.format, self.size))
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    return seen


# ---- pixel-limit amplification -------------------------------------------------------------


@pytest.mark.parametrize("as_blob", [False, True], ids=["file", "upload"])
def test_a_16bit_png_over_the_decode_budget_is_refused_before_decoding(
    hostile_png: Path, decoded: list[tuple[str | None, tuple[int, int]]], as_blob: bool
) -> None:
    src: Path | Blob = Blob("gray16.png", hostile_png.read_bytes()) if as_blob else hostile_png
    budget = 200 * MB
    caught: list[InputError] = []

    def call() -> None:
        try:
            load_image(src, MAX_PIXELS, MAX_BYTES, max_decode_bytes=budget)
        except InputError as exc:
            caught.append(exc)

    growth, seconds = peak_growth(call)
    print(f"\nrefused {src}: {seconds * 1000:.0f} ms, peak RSS growth {growth / MB:.1f} MB")
    assert caught, "the image was decoded"
    err = caught[0]
    assert err.source == str(src)
    assert f"{HOSTILE_SIDE}x{HOSTILE_SIDE} pixels of mode I;16" in err.reason
    assert "over the limit of 200,000,000" in err.reason
    assert decoded == []  # Pillow never decoded a pixel
    assert seconds < 1.0
    assert growth < 20 * MB


MEASURE = """
import json, sys, time
from pathlib import Path
from PIL import Image
from faceledger.images import decode_cost, load_image

def kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

path = Path(sys.argv[1])
with Image.open(path) as img:
    cost = decode_cost(img, path.stat().st_size)
Path("/proc/self/clear_refs").write_text("5")
before = kb("VmRSS")
started = time.perf_counter()
out = load_image(path, 60_000_000, 100_000_000)
seconds = time.perf_counter() - started
print(json.dumps({"growth": (kb("VmHWM") - before) * 1024, "cost": cost, "seconds": seconds,
                  "shape": list(out.shape), "max": int(out.max())}))
"""


def measured(path: Path) -> dict[str, Any]:
    """Peak RSS growth of :func:`load_image` (default limits) on ``path`` in a new process
    (a fresh heap: no memory freed by earlier tests to reuse), and ``decode_cost``."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure memory")
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def test_the_issues_16bit_png_decodes_within_its_estimate(hostile_png: Path) -> None:
    """Under the default budget it is read, in ~5 bytes a pixel (the 2-byte pixels and the
    3-byte RGB array) instead of the 28 it took (1.7 GB) before the RGB conversion went
    strip by strip."""
    got = measured(hostile_png)
    pixels = HOSTILE_SIDE * HOSTILE_SIDE
    print(
        f"\ndecoded the 16-bit {HOSTILE_SIDE}x{HOSTILE_SIDE} PNG: {got['seconds']:.2f} s, peak "
        f"RSS growth {got['growth'] / MB:.0f} MB ({got['growth'] / pixels:.2f} B/px), "
        f"estimate {got['cost'] / MB:.0f} MB"
    )
    assert got["cost"] <= images.MAX_DECODE_BYTES
    assert got["shape"] == [HOSTILE_SIDE, HOSTILE_SIDE, 3] and got["max"] == 0
    assert got["growth"] <= got["cost"]
    assert got["growth"] < 6 * pixels


def _rgba_png(path: Path) -> Path:
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    Image.fromarray(small, "RGBA").resize((2000, 1500)).save(path, "PNG", compress_level=1)
    return path


def _progressive_jpeg(path: Path) -> Path:
    rng = np.random.default_rng(2)
    small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(small).resize((2000, 1500)).save(
        path, "JPEG", quality=90, progressive=True, subsampling=0
    )
    return path


def _webp(path: Path) -> Path:
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(small).resize((2000, 1500)).save(path, "WEBP", quality=80)
    return path


@pytest.mark.parametrize(
    "make", [_rgba_png, _progressive_jpeg, _webp], ids=["rgba", "jpeg", "webp"]
)
def test_decoding_stays_within_the_estimate(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    got = measured(make(tmp_path / "image"))
    print(
        f"\n{make.__name__}: peak RSS growth {got['growth'] / MB:.1f} MB, estimate "
        f"{got['cost'] / MB:.1f} MB"
    )
    assert got["growth"] <= got["cost"]


def whole_image_rgb(img: Image.Image) -> np.ndarray:
    """The conversion as it was, on the whole image at once (the reference)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _tall(mode: str) -> Image.Image:
    """A random image of ``mode`` taller than three strips of the RGB conversion."""
    rng = np.random.default_rng(5)
    size = (600, 1500)
    if mode in ("I;16", "I", "F"):
        values = rng.integers(0, 65536, size[::-1], dtype=np.uint16)
        img = Image.fromarray(values)
        return img if mode == "I;16" else img.convert(mode)
    img = Image.fromarray(rng.integers(0, 256, (*size[::-1], 4), dtype=np.uint8), "RGBA")
    if mode == "P":
        img = img.convert("RGB").quantize(64)
        img.info["transparency"] = 3
        return img
    return img.convert(mode)


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I;16", "I", "F"])
def test_strip_by_strip_conversion_equals_the_whole_image_one(mode: str) -> None:
    img = _tall(mode)
    assert img.size[0] * img.size[1] > 3 * images._STRIP_PIXELS
    np.testing.assert_array_equal(images.to_rgb(img), whole_image_rgb(img))


# ---- formats ------------------------------------------------------------------------------

EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n"
    b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"
)


@pytest.mark.parametrize("as_blob", [False, True], ids=["file", "upload"])
def test_an_eps_file_is_refused_without_its_parser_or_decoder_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_blob: bool
) -> None:
    ran: list[str] = []
    for name in ("_open", "load"):
        real = getattr(EpsImagePlugin.EpsImageFile, name)

        def spy(self: Any, *args: Any, _name: str = name, _real: Any = real) -> Any:
            ran.append(_name)
            return _real(self, *args)

        monkeypatch.setattr(EpsImagePlugin.EpsImageFile, name, spy)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: ran.append("gs"))
    path = tmp_path / "drawing.eps"
    path.write_bytes(EPS)
    src: Path | Blob = Blob("drawing.eps", EPS) if as_blob else path
    with pytest.raises(InputError) as caught:
        load_image(src, MAX_PIXELS, MAX_BYTES)
    assert caught.value.source == str(src)
    assert caught.value.reason == (
        "EPS images are not accepted; give JPEG, PNG, WebP, BMP, TIFF, GIF or PPM/PGM"
    )
    assert ran == []


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "SGI", "DDS", "QOI", "JPEG2000", "MSP", "XBM"])
def test_other_formats_faceledger_does_not_need_are_named_and_refused(
    fmt: str, decoded: list[tuple[str | None, tuple[int, int]]]
) -> None:
    data = io.BytesIO()
    Image.new("1" if fmt in ("MSP", "XBM") else "RGB", (16, 16)).save(data, fmt)
    with pytest.raises(InputError, match=f"^x: {fmt} images are not accepted; give JPEG"):
        load_image(Blob("x", data.getvalue()), MAX_PIXELS, MAX_BYTES)
    assert decoded == []


def test_a_format_without_a_signature_is_refused_too(
    decoded: list[tuple[str | None, tuple[int, int]]],
) -> None:
    """TGA files carry no signature: refused all the same (its first bytes happen to look
    like a Windows cursor's, the name given), and never decoded."""
    data = io.BytesIO()
    Image.new("RGB", (16, 16)).save(data, "TGA")
    with pytest.raises(InputError, match=r"not an image file|images are not accepted"):
        load_image(Blob("x.tga", data.getvalue()), MAX_PIXELS, MAX_BYTES)
    assert decoded == []


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("JPEG", "RGB"), ("PNG", "RGBA"), ("WEBP", "RGB"), ("BMP", "RGB"), ("TIFF", "RGB"),
     ("GIF", "P"), ("PPM", "RGB"), ("PPM", "L")],
)  # fmt: skip
def test_the_accepted_formats_load(fmt: str, mode: str) -> None:
    data = io.BytesIO()
    Image.new(mode, (24, 16)).save(data, fmt)
    assert load_image(Blob("x", data.getvalue()), MAX_PIXELS, MAX_BYTES).shape == (16, 24, 3)


# ---- many large decodes at once ---------------------------------------------------------


@pytest.fixture(scope="module")
def large_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("large") / "large.png"
    Image.new("L", (2000, 2000), 128).save(path)
    return path


@pytest.mark.parametrize(("room", "most"), [(1, 1), (2, 2), (4, 4)])
def test_concurrent_decodes_never_exceed_the_total(
    large_png: Path, monkeypatch: pytest.MonkeyPatch, room: int, most: int
) -> None:
    """4 threads decode at once with room in the total for ``room`` such decodes: at most
    that many are ever inside the decoder together (counted, not timed), and the gate's
    bytes in use never pass the total."""
    with Image.open(large_png) as img:
        cost = decode_cost(img, large_png.stat().st_size)
    total = room * cost
    state = threading.Condition()
    inside = 0
    seen: list[tuple[int, int]] = []
    real_decode = images._decode

    def counting_decode(img: Image.Image) -> np.ndarray:
        nonlocal inside
        with state:
            inside += 1
            seen.append((inside, images.DECODES.in_use))
            state.notify_all()
            # wait (briefly) for others to come in too, so that a broken cap would show
            state.wait_for(lambda: inside >= most, timeout=5.0 if most > 1 else 0.05)
        try:
            return real_decode(img)
        finally:
            with state:
                inside -= 1

    monkeypatch.setattr(images, "_decode", counting_decode)
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(
            load_image(
                large_png, MAX_PIXELS, MAX_BYTES, max_decode_bytes=cost, decode_budget_total=total
            )
        )

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4
    assert max(n for n, _ in seen) == most
    assert max(used for _, used in seen) <= total
    assert images.DECODES.in_use == 0 and images.DECODES.running == 0


def _wait_until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5.0
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.001)


def test_the_gate_serves_in_order_of_arrival() -> None:
    """A large decode waiting for room is not overtaken by small ones that would fit."""
    gate = DecodeGate()
    order: list[str] = []
    release_first = threading.Event()

    def hold(name: str, cost: int, until: threading.Event | None = None) -> None:
        with gate.hold(cost, total=10):
            order.append(name)
            if until is not None:
                until.wait(5)

    first = threading.Thread(target=hold, args=("first", 6, release_first))
    first.start()
    _wait_until(lambda: gate.running == 1)
    large = threading.Thread(target=hold, args=("large", 6))
    large.start()
    _wait_until(lambda: gate.waiting == 1)
    small = threading.Thread(target=hold, args=("small", 1))
    small.start()
    _wait_until(lambda: gate.waiting == 2)
    assert order == ["first"]  # "small" would fit beside "first", but "large" came before
    release_first.set()
    for thread in (first, large, small):
        thread.join(5)
    assert order == ["first", "large", "small"]
    assert (gate.in_use, gate.running, gate.waiting) == (0, 0, 0)


def test_a_decode_alone_runs_even_over_the_total() -> None:
    gate = DecodeGate()
    with gate.hold(50, total=10):
        assert gate.in_use == 50


def test_the_total_must_hold_one_decode() -> None:
    with pytest.raises(ConfigError, match=r"decode_budget_total .* at least max_decode_bytes"):
        load_config(max_decode_bytes=600_000_000, decode_budget_total=500_000_000)
    config = load_config()
    assert (config.max_decode_bytes, config.decode_budget_total) == (
        images.MAX_DECODE_BYTES,
        images.DECODE_BUDGET_TOTAL,
    )
