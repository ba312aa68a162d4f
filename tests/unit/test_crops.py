"""Stored face crops: JPEG now (a few tens of KB, under a millisecond), old PNG crops still
read, damaged crops refused by name, and re-embedding working from both."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceledger.cli.main import app
from faceledger.config import Config
from faceledger.engine import Engine
from faceledger.errors import StorageError
from faceledger.faces.align import canonical_crops
from faceledger.faces.crops import CROP_FORMAT, crop_media_type, decode_crop, encode_crop

GALLERIES = Path(__file__).resolve().parents[1] / "data" / "galleries"
LFW_PHOTO = Path("images") / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"
OBAMA = Path("identities") / "fr_obama" / "face_recognition_obama.jpg"
MAX_BYTES = 30 * 1024
runner = CliRunner()


def run(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def png(rgb: np.ndarray) -> bytes:
    """A crop as the old code stored it (Pillow, default PNG)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def templates(db: Path) -> list[tuple[str, int, bytes, bytes]]:
    conn = sqlite3.connect(db)
    try:
        query = "SELECT model_id, dim, embedding, crop_png FROM templates ORDER BY id"
        return conn.execute(query).fetchall()
    finally:
        conn.close()


@pytest.fixture
def canonical(lfw: Path, models_dir: Path, tmp_path: Path) -> tuple[Engine, np.ndarray, object]:
    """A real canonical crop (fast profile, as enrollment makes it) and its geometry."""
    engine = Engine(Config(profile="fast", db=tmp_path / "g.db"))
    found = engine.analyze(lfw / LFW_PHOTO)
    crops, geometry = canonical_crops(found.image, found.faces.largest())
    return engine, crops[0], geometry


def test_a_real_crop_is_stored_small_and_reembeds_as_the_lossless_one(
    canonical: tuple[Engine, np.ndarray, object],
) -> None:
    engine, crop, geometry = canonical
    data = encode_crop(crop)
    assert CROP_FORMAT.startswith("jpeg")
    assert crop_media_type(data) == "image/jpeg"
    assert len(data) <= MAX_BYTES < len(png(crop))  # the old PNG took ~100 KB
    back = decode_crop(data)
    assert back.shape == crop.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - crop).mean() < 3  # RGB order kept, little loss
    lossless = engine.embed(crop, geometry).vectors[0]  # type: ignore[arg-type]
    stored = engine.embed(back, geometry).vectors[0]  # type: ignore[arg-type]
    assert float(lossless @ stored) >= 0.99


def test_an_old_png_crop_is_read_exactly(canonical: tuple[Engine, np.ndarray, object]) -> None:
    _, crop, _ = canonical
    old = png(crop)
    assert crop_media_type(old) == "image/png"
    np.testing.assert_array_equal(decode_crop(old), crop)


def test_the_old_galleries_png_crops_are_read() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript((GALLERIES / "v4.sql").read_text("utf-8"))
    crops = [bytes(c) for (c,) in conn.execute("SELECT crop_png FROM templates")]
    crops += [bytes(c) for (c,) in conn.execute("SELECT best_crop_png FROM events") if c]
    conn.close()
    assert crops
    for data in crops:
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        np.testing.assert_array_equal(decode_crop(data), expected)


def test_a_grey_or_alpha_png_is_read_as_rgb() -> None:
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG")
    assert decode_crop(buffer.getvalue()).shape == (8, 8, 3)
    rgba = np.zeros((8, 8, 4), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    assert decode_crop(buffer.getvalue()).shape == (8, 8, 3)


@pytest.mark.parametrize(
    ("cut", "says"),
    [
        (lambda jpeg, png: b"", "neither JPEG nor PNG (0 bytes"),
        (lambda jpeg, png: b"GIF89a" + jpeg, "neither JPEG nor PNG"),
        (lambda jpeg, png: jpeg[: len(jpeg) // 2], "image/jpeg) cannot be decoded"),
        (lambda jpeg, png: png[: len(png) // 2], "image/png) cannot be decoded"),
        (lambda jpeg, png: jpeg[:20] + b"\xff\xd9", "image/jpeg) cannot be decoded"),
    ],
    ids=["empty", "gif", "cut-jpeg", "cut-png", "garbled-jpeg"],
)
def test_damaged_crop_bytes_are_a_storage_error_that_says_so(cut: object, says: str) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = cut(encode_crop(rgb), png(rgb))  # type: ignore[operator]
    assert crop_media_type(data) in {None, "image/jpeg", "image/png"}
    with pytest.raises(StorageError, match="damaged") as caught:
        decode_crop(data)
    assert says in str(caught.value)


def test_encode_refuses_what_is_not_an_rgb_crop() -> None:
    with pytest.raises(ValueError, match="RGB"):
        encode_crop(np.zeros((8, 8), np.uint8))


def test_reembed_works_on_an_upgraded_v4_gallery_with_png_crops(
    models_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "v4.db"
    conn = sqlite3.connect(db)
    conn.executescript((GALLERIES / "v4.sql").read_text("utf-8"))
    # The synthetic dump keeps no landmarks (enrollment always wrote five): give each 12x12
    # noise crop five points inside it so that the ArcFace aligner can realign it.
    five = [[4.0, 5.0], [8.0, 5.0], [6.0, 7.0], [4.5, 9.0], [7.5, 9.0]]
    geometry = json.dumps({"box": [1.0, 1.0, 11.0, 11.0], "landmarks": five})
    conn.execute("UPDATE templates SET crop_geometry = ?", (geometry,))
    conn.commit()
    conn.close()
    before = templates(db)
    assert {crop_media_type(row[3]) for row in before} == {"image/png"}

    for profile, model in (("embedded", "dlib_resnet128"), ("fast", None)):
        code, _, err = run("gallery", "reembed", "--profile", profile, "--db", db)
        assert code == 0, err
        after = templates(db)
        assert len(after) == len(before) == 7
        assert len({row[0] for row in after}) == 1 and after[0][0] != "synthetic_128"
        assert model is None or after[0][0] == model
        assert [row[3] for row in after] == [row[3] for row in before]  # crops untouched


def test_enroll_stores_a_jpeg_crop_that_reembeds_across_models(
    smoke: Path, models_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "g.db"
    photo = smoke / OBAMA
    code, _, err = run(
        "enroll", "--name", "obama", photo, "--basis", "test", "--profile", "fast", "--db", db
    )
    assert code == 0, err
    [(model, _, first, crop)] = templates(db)
    assert crop_media_type(crop) == "image/jpeg" and len(crop) <= MAX_BYTES

    code, _, err = run("gallery", "reembed", "--profile", "embedded", "--db", db)
    assert code == 0, err
    assert templates(db)[0][0] == "dlib_resnet128"
    probe = smoke / "identities" / "fr_obama" / "face_recognition_obama2.jpg"
    code, out, err = run("identify", probe, "--db", db, "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["faces"][0]["subject"] == "obama"

    code, _, err = run("gallery", "reembed", "--profile", "fast", "--db", db)
    assert code == 0, err
    [(again_model, _, again, _)] = templates(db)
    assert again_model == model
    cosine = float(np.frombuffer(first, "<f4") @ np.frombuffer(again, "<f4"))
    assert cosine >= 0.99  # back from the stored JPEG crop, as from the photo itself
