"""The API on real photos: subjects, enrollment by upload (bad uploads too), identify,
verify, detect, upload limits, what each search writes to the ledger, erasure, and the
ledger's own checks (verify, export, tampering), on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from faceledger.access import Role
from faceledger.ledger import GENESIS, entry_hash
from faceledger.ledger.audit import name_digest
from tests.api.apikit import (
    SCENES,
    Api,
    no_face_png,
    photo,
    sha256,
)
from tests.api.conftest import Backend

OBAMA = "fr_obama"
ENROLL_OBAMA = ("face_recognition_obama.jpg", "face_recognition_obama-1080p.jpg")
PROBE_OBAMA = "face_recognition_obama1.jpg"
STRANGER = ("deepface_id05", "deepface_img18.jpg")
"""Someone unlike anyone enrolled in this module."""


def files(field: str, *named: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes]]]:
    return [(field, item) for item in named]


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def identify(api: Api, data: bytes, name: str = "probe.jpg", **form: Any) -> httpx.Response:
    form.setdefault("purpose", "case 42: who is this")
    return api.client.post(
        "/v1/identify",
        files={"image": (name, data)},
        data=form,
        headers=api.headers(Role.operator),
    )


def create_subject(
    api: Api, name: str, basis: str = "signed consent, form 12", **extra: Any
) -> Any:
    response = api.client.post(
        "/v1/subjects",
        json={"name": name, "legal_basis": basis, **extra},
        headers=api.headers(Role.enroller),
    )
    assert response.status_code == 201, response.text
    return response.json()


def enroll(api: Api, name: str, *named: tuple[str, bytes], **form: Any) -> httpx.Response:
    return api.client.post(
        f"/v1/subjects/{name}/templates",
        files=files("images", *named),
        data=form,
        headers=api.headers(Role.enroller),
    )


@pytest.fixture(scope="module")
def obama(api: Api) -> str:
    """Obama, enrolled from two photos (a third one is the probe)."""
    create_subject(api, "obama")
    response = enroll(api, "obama", *((n, photo(OBAMA, n)) for n in ENROLL_OBAMA))
    assert response.status_code == 201, response.text
    assert response.json()["enrolled"] == list(ENROLL_OBAMA)
    return "obama"


# ---- subjects --------------------------------------------------------------------------


def test_a_subject_needs_its_legal_basis(api: Api) -> None:
    enroller = api.headers(Role.enroller)
    for body in ({"name": "no-basis"}, {"name": "no-basis", "legal_basis": "ok"}):
        response = api.client.post("/v1/subjects", json=body, headers=enroller)
        assert response.status_code == 422, response.text
        assert "legal_basis" in error_of(response)["message"]
    for bad in ("a/b", "tab\there", ""):
        response = api.client.post(
            "/v1/subjects", json={"name": bad, "legal_basis": "consent"}, headers=enroller
        )
        assert response.status_code == 422, (bad, response.text)
    made = create_subject(api, "Ada Lovelace", "  contract 2024-17  ")
    assert made["name"] == "Ada Lovelace"
    assert made["legal_basis"] == "contract 2024-17"
    assert made["templates"] == 0
    shown = api.client.get("/v1/subjects/Ada Lovelace", headers=enroller)
    assert shown.status_code == 200
    assert shown.json()["legal_basis"] == "contract 2024-17"


def test_a_duplicate_subject_is_409(api: Api) -> None:
    create_subject(api, "twice")
    again = api.client.post(
        "/v1/subjects",
        json={"name": "twice", "legal_basis": "another basis"},
        headers=api.headers(Role.enroller),
    )
    assert again.status_code == 409, again.text
    assert error_of(again)["type"] == "ConflictError"


def test_unknown_subject_and_watch_list_are_404(api: Api) -> None:
    enroller = api.headers(Role.enroller)
    assert api.client.get("/v1/subjects/nobody", headers=enroller).status_code == 404
    assert api.client.delete("/v1/subjects/nobody", headers=enroller).status_code == 404
    response = enroll(api, "nobody", ("a.jpg", photo(OBAMA, PROBE_OBAMA)))
    assert response.status_code == 404
    assert "legal basis" in error_of(response)["message"]
    response = api.client.post(
        "/v1/subjects",
        json={"name": "listed", "legal_basis": "consent", "watchlists": ["no-such-list"]},
        headers=enroller,
    )
    assert response.status_code == 404, response.text
    # nothing half-made: the subject was not created either
    assert api.client.get("/v1/subjects/listed", headers=enroller).status_code == 404


# ---- enrollment ------------------------------------------------------------------------


def bad_uploads() -> list[tuple[str, bytes]]:
    return [
        ("blank.png", no_face_png()),
        ("notes.txt", b"this is not an image\n" * 20),
        ("truncated.jpg", photo(OBAMA, PROBE_OBAMA)[:3000]),
    ]


def test_bad_uploads_alone_are_422(api: Api) -> None:
    create_subject(api, "bad-uploads")
    for name, data in bad_uploads():
        response = enroll(api, "bad-uploads", (name, data))
        assert response.status_code == 422, response.text
        error = error_of(response)
        assert error["type"] == "InputError"
        assert name in error["message"]
    shown = api.client.get("/v1/subjects/bad-uploads", headers=api.headers(Role.enroller))
    assert shown.json()["templates"] == 0


def test_bad_uploads_beside_a_good_one_are_listed(api: Api) -> None:
    create_subject(api, "mixed-batch")
    good = ("rose.jpg", photo("fr_rose_leslie", "face_recognition_img1.jpg"))
    response = enroll(api, "mixed-batch", *bad_uploads(), good)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["enrolled"] == ["rose.jpg"]
    reasons = {f["source"]: f["reason"] for f in body["failures"]}
    assert set(reasons) == {"blank.png", "notes.txt", "truncated.jpg"}
    assert "no face" in reasons["blank.png"]
    assert "not an image" in reasons["notes.txt"]
    templates = api.client.get(
        "/v1/subjects/mixed-batch/templates", headers=api.headers(Role.enroller)
    ).json()
    assert [t["source_sha256"] for t in templates] == [sha256(good[1])]
    # the ledger's enroll entry names the one photo enrolled, by hash
    entry = api.ledger_json()[-1]
    assert entry["seq"] == body["ledger_seq"]
    assert entry["action"] == "enroll"
    assert entry["inputs"] == [sha256(good[1])]
    assert entry["result"]["templates"] == 1


def test_a_scene_with_several_faces_needs_largest(api: Api) -> None:
    create_subject(api, "from-a-scene")
    scene = ("two_people.jpg", (SCENES / "two_people.jpg").read_bytes())
    refused = enroll(api, "from-a-scene", scene)
    assert refused.status_code == 422, refused.text
    assert "faces found" in error_of(refused)["message"]
    taken = enroll(api, "from-a-scene", scene, largest="true")
    assert taken.status_code == 201, taken.text
    assert taken.json()["enrolled"] == ["two_people.jpg"]


def test_too_many_photos_in_one_request_is_413(api: Api) -> None:
    create_subject(api, "many-photos")
    response = enroll(api, "many-photos", *((f"{i}.jpg", b"x") for i in range(51)))
    assert response.status_code == 413, response.text


def test_delete_one_template(api: Api) -> None:
    create_subject(api, "two-templates")
    response = enroll(
        api,
        "two-templates",
        *(
            (n, photo("fr_biden", n))
            for n in ("face_recognition_biden.jpg", "face_recognition_biden2.jpg")
        ),
    )
    assert response.status_code == 201, response.text
    enroller = api.headers(Role.enroller)
    ids = [
        t["id"]
        for t in api.client.get("/v1/subjects/two-templates/templates", headers=enroller).json()
    ]
    assert len(ids) == 2
    gone = api.client.delete(f"/v1/subjects/two-templates/templates/{ids[0]}", headers=enroller)
    assert gone.status_code == 200, gone.text
    left = api.client.get("/v1/subjects/two-templates/templates", headers=enroller).json()
    assert [t["id"] for t in left] == ids[1:]
    again = api.client.delete(f"/v1/subjects/two-templates/templates/{ids[0]}", headers=enroller)
    assert again.status_code == 404, again.text
    entry = api.ledger_json()[-1]
    assert entry["action"] == "template.delete"
    assert "two-templates" not in json.dumps(entry)


# ---- searches --------------------------------------------------------------------------


def test_identify_names_the_enrolled_person(api: Api, obama: str) -> None:
    response = identify(api, photo(OBAMA, PROBE_OBAMA), top=3)
    assert response.status_code == 200, response.text
    faces = response.json()["faces"]
    assert len(faces) == 1
    face = faces[0]
    assert face["subject"] == obama
    assert face["score"] >= face["threshold"]
    assert face["candidates"][0]["subject"] == obama
    assert len(face["box"]) == 4


def test_a_stranger_is_unknown(api: Api, obama: str) -> None:
    response = identify(api, photo(*STRANGER))
    assert response.status_code == 200, response.text
    faces = response.json()["faces"]
    assert faces, "the stranger's face was not found"
    assert all(f["subject"] is None for f in faces)


def test_identify_requires_a_purpose(api: Api) -> None:
    before = len(api.ledger_json())
    data = photo(OBAMA, PROBE_OBAMA)
    for form in ({}, {"purpose": "no"}, {"purpose": "x" * 501}):
        response = api.client.post(
            "/v1/identify",
            files={"image": ("probe.jpg", data)},
            data=form,
            headers=api.headers(Role.operator),
        )
        assert response.status_code == 422, response.text
        assert "purpose" in error_of(response)["message"]
    assert len(api.ledger_json()) == before, "a refused search was recorded"


def test_each_identify_adds_one_ledger_entry_without_the_image(api: Api, obama: str) -> None:
    data = photo(OBAMA, PROBE_OBAMA)
    before = api.ledger_json()
    response = identify(api, data, purpose="border check, shift 3", case_ref="CASE-2024-001")
    assert response.status_code == 200, response.text
    after = api.ledger_json()
    assert len(after) == len(before) + 1
    entry = after[-1]
    assert entry["seq"] == response.json()["ledger_seq"]
    assert entry["prev_hash"] == (before[-1]["hash"] if before else GENESIS)
    assert entry["action"] == "identify"
    assert (entry["actor"], entry["role"]) == ("operator-1", "operator")
    assert entry["purpose"] == "border check, shift 3"
    assert entry["case_ref"] == "CASE-2024-001"
    assert entry["inputs"] == [sha256(data)] == [response.json()["image_sha256"]]
    assert entry["model"] == "mobilefacenet"
    assert entry["result"]["faces"] == 1
    assert entry["result"]["matches"][0]["subject"] == obama
    # a summary, not an image: small, and no run of the image's bytes in any encoding
    text = json.dumps(entry)
    assert len(text) < 2000
    chunk = data[1000:1048]
    for encoded in (base64.b64encode(chunk).decode(), chunk.hex(), chunk.decode("latin-1")):
        assert encoded not in text
    assert "box" not in json.dumps(entry["result"])


def test_bad_images_are_422_and_recorded(api: Api) -> None:
    for name, data in bad_uploads()[1:]:
        before = len(api.ledger_json())
        response = identify(api, data, name=name)
        assert response.status_code == 422, response.text
        error = error_of(response)
        assert error["type"] == "InputError"
        assert error["source"] == name
        entries = api.ledger_json()
        assert len(entries) == before + 1
        assert entries[-1]["inputs"] == [sha256(data)]
        assert "error" in entries[-1]["result"]
    # a photo without a face is an answer, not an error
    response = identify(api, no_face_png(), name="blank.png")
    assert response.status_code == 200, response.text
    assert response.json()["faces"] == []


def test_verify_same_and_different_people(api: Api) -> None:
    def verify(a: bytes, b: bytes, **form: Any) -> httpx.Response:
        return api.client.post(
            "/v1/verify",
            files={"image_a": ("a.jpg", a), "image_b": ("b.jpg", b)},
            data=form,
            headers=api.headers(Role.operator),
        )

    one, two = photo(OBAMA, PROBE_OBAMA), photo(OBAMA, "face_recognition_obama2.jpg")
    same = verify(one, two, purpose="is this the same man")
    assert same.status_code == 200, same.text
    assert same.json()["same"] is True
    assert same.json()["score"] >= same.json()["threshold"]
    other = verify(one, photo("fr_biden", "face_recognition_biden.jpg"), purpose="same man?")
    assert other.status_code == 200, other.text
    assert other.json()["same"] is False
    entry = api.ledger_json()[-1]
    assert entry["action"] == "verify"
    assert entry["inputs"] == [sha256(one), sha256(photo("fr_biden", "face_recognition_biden.jpg"))]
    assert verify(one, two).status_code == 422  # no purpose


def test_detect_finds_the_faces_of_a_scene(api: Api, obama: str) -> None:
    data = (SCENES / "couple.jpg").read_bytes()
    response = api.client.post(
        "/v1/detect", files={"image": ("couple.jpg", data)}, headers=api.headers(Role.operator)
    )
    assert response.status_code == 200, response.text
    faces = response.json()["faces"]
    assert len(faces) >= 2
    for face in faces:
        assert face["subject"] is None  # detection names nobody
        assert len(face["landmarks"]) == 5
    entry = api.ledger_json()[-1]
    assert (entry["action"], entry["inputs"]) == ("detect", [sha256(data)])
    assert entry["result"] == {"faces": len(faces)}


# ---- upload limits ---------------------------------------------------------------------

LIMIT = 100_000


@pytest.fixture(scope="module")
def small(make_api: Callable[..., Api]) -> Api:
    """An app that takes uploads of at most 100 kB (models load only if needed)."""
    return make_api("small-uploads", load=False, max_upload=LIMIT)


@pytest.mark.parametrize(
    "size", [LIMIT + 1, LIMIT + 60_000, 3 * LIMIT], ids=["just", "framing", "far"]
)
def test_an_over_limit_upload_is_413(small: Api, size: int) -> None:
    """Over the limit: refused whole by the middleware (content-length), or while reading
    the part when the body fits the room left for multipart framing; never recorded."""
    before = len(small.ledger_json())
    response = small.client.post(
        "/v1/identify",
        files={"image": ("big.jpg", b"\xff" * size)},
        data={"purpose": "size check"},
        headers=small.headers(Role.operator),
    )
    assert response.status_code == 413, response.text
    assert error_of(response)["type"] == "PayloadTooLarge"
    assert len(small.ledger_json()) == before


def test_an_upload_at_the_limit_is_read(small: Api) -> None:
    response = small.client.post(
        "/v1/detect",
        files={"image": ("exact.txt", b"a" * LIMIT)},
        headers=small.headers(Role.operator),
    )
    assert response.status_code == 422, response.text  # read, then refused as no image
    assert error_of(response)["type"] == "InputError"


def test_an_over_limit_enrollment_is_413(small: Api) -> None:
    create_subject(small, "big-photos")
    response = enroll(
        small, "big-photos", ("a.jpg", b"\xff" * 1000), ("b.jpg", b"\xff" * (LIMIT + 1))
    )
    assert response.status_code == 413, response.text


# ---- erasure ---------------------------------------------------------------------------


def test_erasure_removes_the_templates_and_the_ledger_keeps_no_name(api: Api) -> None:
    name = "Kit Harington (erasure)"
    create_subject(api, name)
    enrolled = enroll(
        api,
        name,
        *(
            (n, photo("fr_kit_harington", n))
            for n in ("face_recognition_john1.jpeg", "face_recognition_john2.jpeg")
        ),
    )
    assert enrolled.status_code == 201, enrolled.text
    probe = photo("fr_kit_harington", "face_recognition_johnsnow_test1.jpg")
    assert identify(api, probe).json()["faces"][0]["subject"] == name

    enroller = api.headers(Role.enroller)
    erased = api.client.delete(f"/v1/subjects/{name}", headers=enroller)
    assert erased.status_code == 200, erased.text
    assert erased.json()["templates"] == 2
    assert api.client.get(f"/v1/subjects/{name}", headers=enroller).status_code == 404
    assert api.client.get(f"/v1/subjects/{name}/templates", headers=enroller).status_code == 404
    assert api.sql("SELECT count(*) FROM subjects WHERE name = ?", (name,)) == [(0,)]
    # the matcher forgot them too
    faces = identify(api, probe).json()["faces"]
    assert all(f["subject"] != name for f in faces)

    entry = next(e for e in api.ledger_json() if e["seq"] == erased.json()["ledger_seq"])
    assert entry["action"] == "subject.delete"
    text = json.dumps(entry, ensure_ascii=False).lower()
    for part in ("kit", "harington", "erasure"):
        assert part not in text, entry
    assert entry["result"]["subject_sha256"] == name_digest(name)
    assert entry["result"]["templates"] == 2
    again = api.client.delete(f"/v1/subjects/{name}", headers=enroller)
    assert again.status_code == 404


# ---- the ledger ------------------------------------------------------------------------


def test_audit_verify_is_ok(api: Api, obama: str) -> None:
    auditor = api.headers(Role.auditor)
    report = api.client.get("/v1/audit/verify", headers=auditor)
    assert report.status_code == 200, report.text
    body = report.json()
    entries = api.ledger_json()
    assert body["ok"] is True, body
    assert body["entries"] == len(entries) > 0
    assert body["first_bad"] is None
    assert body["head"] == entries[-1]["hash"]
    noted = api.client.get(
        "/v1/audit/verify", params={"expected_head": body["head"]}, headers=auditor
    )
    assert noted.json()["ok"] is True
    cut = api.client.get("/v1/audit/verify", params={"expected_head": "ab" * 32}, headers=auditor)
    assert cut.json()["ok"] is False
    assert cut.json()["first_bad"] == len(entries) + 1
    bad = api.client.get("/v1/audit/verify", params={"expected_head": "nothex"}, headers=auditor)
    assert bad.status_code == 422


def test_audit_list_filters(api: Api, obama: str) -> None:
    auditor = api.headers(Role.auditor)
    found = api.client.get("/v1/audit", params={"action": "enroll", "limit": 1000}, headers=auditor)
    assert found.status_code == 200, found.text
    entries = found.json()
    assert entries and all(e["action"] == "enroll" for e in entries)
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    mine = api.client.get("/v1/audit", params={"actor": "enroller-1", "limit": 2}, headers=auditor)
    assert len(mine.json()) == 2
    assert {e["actor"] for e in mine.json()} == {"enroller-1"}


def test_audit_export_lines_recompute(api: Api, obama: str) -> None:
    response = api.client.get("/v1/audit/export", headers=api.headers(Role.auditor))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["content-disposition"]
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == len(api.ledger_json()) > 0
    prev = GENESIS
    for seq, line in enumerate(lines, start=1):
        assert line["seq"] == seq
        assert line["prev_hash"] == prev
        assert entry_hash(line) == line["hash"], line
        prev = line["hash"]


def test_a_tampered_ledger_fails_verification(
    make_api: Callable[..., Api], backend: Backend
) -> None:
    api = make_api("tamper", backend=backend, load=False)
    for i in range(4):
        create_subject(api, f"person-{i}")
    auditor = api.headers(Role.auditor)
    assert api.client.get("/v1/audit/verify", headers=auditor).json()["ok"] is True
    # the database refuses changes while its triggers stand
    with pytest.raises(Exception, match="append-only"):
        api.sql("UPDATE ledger SET actor = 'someone else' WHERE seq = 3")
    api.drop_ledger_guards()
    api.sql("UPDATE ledger SET actor = 'someone else' WHERE seq = 3")
    report = api.client.get("/v1/audit/verify", headers=auditor).json()
    assert report["ok"] is False
    assert report["first_bad"] == 3
    assert "entry 3" in report["reason"]
    # the export shows the same: line 3 no longer recomputes
    lines = [
        json.loads(x) for x in api.client.get("/v1/audit/export", headers=auditor).text.splitlines()
    ]
    assert [entry_hash(x) == x["hash"] for x in lines] == [True, True, False, True]


def test_a_deleted_ledger_entry_fails_verification(
    make_api: Callable[..., Api], backend: Backend
) -> None:
    api = make_api("tamper-delete", backend=backend, load=False)
    for i in range(4):
        create_subject(api, f"person-{i}")
    api.drop_ledger_guards()
    api.sql("DELETE FROM ledger WHERE seq = 2")
    report = api.client.get("/v1/audit/verify", headers=api.headers(Role.auditor)).json()
    assert report["ok"] is False
    assert report["first_bad"] == 3
    assert "entry 2" in report["reason"]


# ---- health and metrics ----------------------------------------------------------------


def test_health_and_metrics(api: Api, obama: str) -> None:
    assert identify(api, photo(OBAMA, PROBE_OBAMA)).status_code == 200  # counted below
    health = api.client.get("/healthz", headers=api.headers(Role.auditor))
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "schema_version": health.json()["schema_version"],
        "model": "mobilefacenet",
        "profile": "fast",
        "threads": 1,  # the config's default: one inference thread (measured best)
    }
    metrics = api.client.get("/metrics", headers=api.headers(Role.reviewer))
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'faceledger_requests_total{method="POST",route="/v1/identify",status="200"}' in text
    assert "faceledger_pending_reviews" in text
    assert "faceledger_faces_total" in text
