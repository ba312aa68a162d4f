"""`/v1/cameras` on real galleries (SQLite and PostgreSQL): the admin adds, pauses,
resumes and removes cameras, the operator reads them; every change is one ledger entry
whose seq the answer carries; 404, 409 and 422 where they belong; and a camera's
credentials in no answer (records, errors) and not in the ledger (list and export).

Who may call which route is checked for every role in ``test_api_authorisation`` (from
``apikit.POLICY``); here only what each allowed call does. No model is needed."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from faceledger.access import Role
from tests.api.apikit import Api

SECRET = "Wh1sper-s3cret"
URL = f"rtsp://door-user:{SECRET}@10.0.0.5:554/stream1"
SUB = f"rtsp://door-user:{SECRET}@10.0.0.5:554/stream2"
SHOWN = "rtsp://***@10.0.0.5:554/stream1"


def unique(prefix: str) -> str:
    """A name no other test of the shared app uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def no_secret(response: httpx.Response) -> httpx.Response:
    assert SECRET not in response.text, response.text
    assert SECRET not in json.dumps(dict(response.headers))
    return response


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] and error["message"]
    return error


def watchlist(api: Api) -> str:
    name = unique("list")
    made = api.client.post("/v1/watchlists", json={"name": name}, headers=api.headers(Role.admin))
    assert made.status_code == 201, made.text
    return name


def body(api: Api, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "name": unique("door"),
        "url": URL,
        "purpose": "access control, door 1",
        "legal_basis": "works agreement 2026-04",
        "watchlists": [watchlist(api)],
    }
    settings.update(overrides)
    return settings


def admin(api: Api, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return no_secret(api.client.request(method, path, headers=api.headers(Role.admin), **kwargs))


def ledger(api: Api) -> list[dict[str, Any]]:
    """The ledger as the auditor reads it (both ways), checked to hold no secret."""
    auditor = api.headers(Role.auditor)
    listed = no_secret(api.client.get("/v1/audit", params={"limit": 10000}, headers=auditor))
    assert listed.status_code == 200, listed.text
    exported = no_secret(api.client.get("/v1/audit/export", headers=auditor))
    assert exported.status_code == 200, exported.text
    assert SECRET not in json.dumps(api.ledger_json())
    entries: list[dict[str, Any]] = listed.json()
    return entries


def test_add_show_list_pause_resume_delete(light_api: Api) -> None:
    api = light_api
    first, second = watchlist(api), watchlist(api)
    wanted = body(
        api, watchlists=[second, first, second], detect_url=SUB, detect_fps=2.5, min_face=24,
        transport="udp", timeout=7,
    )  # fmt: skip
    name = wanted["name"]
    made = admin(api, "POST", "/v1/cameras", json=wanted)
    assert made.status_code == 201, made.text
    camera = made.json()
    assert camera["name"] == name
    assert camera["url"] == SHOWN
    assert camera["detect_url"] == "rtsp://***@10.0.0.5:554/stream2"
    assert camera["watchlists"] == sorted([first, second])
    assert (camera["detect_fps"], camera["min_face"], camera["transport"]) == (2.5, 24, "udp")
    assert (camera["timeout"], camera["paused"], camera["health"]) == (7.0, False, None)
    seqs = {"camera.add": camera["ledger_seq"]}

    for role in (Role.admin, Role.operator):
        shown = no_secret(api.client.get(f"/v1/cameras/{name}", headers=api.headers(role)))
        assert shown.status_code == 200, shown.text
        assert shown.json() == {k: v for k, v in camera.items() if k != "ledger_seq"}
        listed = no_secret(api.client.get("/v1/cameras", headers=api.headers(role)))
        assert listed.status_code == 200, listed.text
        assert name in [c["name"] for c in listed.json()]

    paused = admin(api, "POST", f"/v1/cameras/{name}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    seqs["camera.pause"] = paused.json()["ledger_seq"]
    assert admin(api, "GET", f"/v1/cameras/{name}").json()["paused"] is True
    resumed = admin(api, "POST", f"/v1/cameras/{name}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused"] is False
    seqs["camera.resume"] = resumed.json()["ledger_seq"]

    removed = admin(api, "DELETE", f"/v1/cameras/{name}")
    assert removed.status_code == 200, removed.text
    assert removed.json()["name"] == name and removed.json()["url"] == SHOWN
    seqs["camera.remove"] = removed.json()["ledger_seq"]
    gone = admin(api, "GET", f"/v1/cameras/{name}")
    assert gone.status_code == 404, gone.text
    assert name not in [c["name"] for c in admin(api, "GET", "/v1/cameras").json()]

    by_seq = {e["seq"]: e for e in ledger(api)}
    for action, seq in seqs.items():
        entry = by_seq[seq]
        assert (entry["action"], entry["actor"], entry["role"]) == (action, "admin-1", "admin")
        assert entry["result"]["name"] == name and entry["result"]["url"] == SHOWN
    assert by_seq[seqs["camera.add"]]["result"]["purpose"] == "access control, door 1"


def test_a_name_taken_is_409_and_a_missing_watch_list_404(light_api: Api) -> None:
    api = light_api
    wanted = body(api)
    assert admin(api, "POST", "/v1/cameras", json=wanted).status_code == 201
    again = admin(api, "POST", "/v1/cameras", json={**wanted, "url": URL + "x"})
    assert again.status_code == 409, again.text
    assert error_of(again)["type"] == "ConflictError"
    assert wanted["name"] in error_of(again)["message"]

    missing = unique("nolist")
    other = body(api, watchlists=[wanted["watchlists"][0], missing])
    refused = admin(api, "POST", "/v1/cameras", json=other)
    assert refused.status_code == 404, refused.text
    assert missing in error_of(refused)["message"]
    assert admin(api, "GET", f"/v1/cameras/{other['name']}").status_code == 404
    assert other["name"] not in json.dumps(ledger(api))


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("POST", "/pause"), ("POST", "/resume"), ("DELETE", "")],
)
def test_an_unknown_camera_is_404(light_api: Api, method: str, suffix: str) -> None:
    name = unique("nowhere")
    answer = admin(light_api, method, f"/v1/cameras/{name}{suffix}")
    assert answer.status_code == 404, answer.text
    error = error_of(answer)
    assert error["type"] == "NotFoundError" and f"no camera named '{name}'" in error["message"]


CONTROL = "".join(chr(c) for c in range(32)) + "\x7f"
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "bad-name": ({"name": "door 1"}, "camera name"),
    "name-control": ({"name": "door\x1b[31m"}, "camera name"),
    "name-huge": ({"name": "d" * 10_000}, "name"),
    "bad-scheme": ({"url": f"ftp://u:{SECRET}@10.0.0.5/x"}, "ftp://***@10.0.0.5/x"),
    "no-scheme": ({"url": f"u:{SECRET}@10.0.0.5/x"}, "cannot be told apart"),
    "space-in-password": ({"url": f"rtsp://u:{SECRET} x@10.0.0.5/x"}, "spaces"),
    "control-in-address": ({"url": f"rtsp://u:{SECRET}@10.0.0.5/\x00x"}, "control characters"),
    "url-huge": ({"url": f"rtsp://u:{SECRET}@h/" + "x" * 5000}, "url"),
    "url-empty": ({"url": ""}, "url"),
    "purpose-blank": ({"purpose": "   "}, "purpose"),
    "purpose-control-only": ({"purpose": CONTROL}, "purpose"),
    "purpose-huge": ({"purpose": "p" * 100_000}, "purpose"),
    "basis-blank": ({"legal_basis": "\t\n"}, "legal basis"),
    "basis-missing": ({"legal_basis": None}, "legal_basis"),
    "no-watch-list": ({"watchlists": []}, "watchlists"),
    "blank-watch-list": ({"watchlists": [" "]}, "name the watch lists"),
    "watch-lists-not-a-list": ({"watchlists": "staff"}, "watchlists"),
    "too-many-watch-lists": ({"watchlists": [f"w{i}" for i in range(1000)]}, "watchlists"),
    "fps-zero": ({"detect_fps": 0}, "detect_fps"),
    "fps-huge": ({"detect_fps": 1e308}, "detect_fps"),
    "fps-text": ({"detect_fps": "fast"}, "detect_fps"),
    "min-face": ({"min_face": 2}, "min_face"),
    "min-face-huge": ({"min_face": 10**30}, "min_face"),
    "transport": ({"transport": "quic"}, "transport"),
    "timeout": ({"timeout": -1}, "timeout"),
    "bad-sub-stream": ({"detect_url": f"file://u:{SECRET}@h/x"}, "sub-stream"),
}


@pytest.mark.parametrize(("change", "message"), BAD.values(), ids=BAD.keys())
def test_bad_fields_are_422_saying_why_and_never_quote_the_secret(
    light_api: Api, change: dict[str, Any], message: str
) -> None:
    wanted = {k: v for k, v in {**body(light_api), **change}.items() if v is not None}
    answer = admin(light_api, "POST", "/v1/cameras", json=wanted)
    assert answer.status_code == 422, answer.text
    error = error_of(answer)
    assert error["type"] == "ValidationError"
    assert message in error["message"], error["message"]
    assert len(answer.content) < 5000  # a huge input is not echoed


@pytest.mark.parametrize(
    "raw",
    [b'{"detect_fps": NaN}', b'{"timeout": Infinity}', b"{", b"[]", b'"x"', b"\xff\xfe"],
    ids=["nan", "infinity", "truncated", "array", "string", "not-utf8"],
)
def test_a_malformed_body_is_422(light_api: Api, raw: bytes) -> None:
    content = raw
    if raw.startswith(b'{"'):  # the other fields valid, this one not
        fields = json.dumps(body(light_api))[1:-1].encode()
        content = raw[:-1] + b", " + fields + b"}"
    headers = {**light_api.headers(Role.admin), "Content-Type": "application/json"}
    answer = no_secret(light_api.client.post("/v1/cameras", content=content, headers=headers))
    assert answer.status_code == 422, answer.text
    assert error_of(answer)["type"] == "ValidationError"


@pytest.mark.parametrize(
    "segment", ["door%201", "door%00", "-door", "d" * 65, "%E2%80%AEdoor", "door%1B%5B31m"]
)
def test_a_name_no_camera_can_have_is_422_in_the_path(light_api: Api, segment: str) -> None:
    for method, suffix in (("GET", ""), ("POST", "/pause"), ("DELETE", "")):
        answer = admin(light_api, method, f"/v1/cameras/{segment}{suffix}")
        assert answer.status_code == 422, answer.text
        assert error_of(answer)["type"] == "ValidationError"


def test_an_operator_reads_but_may_not_change(light_api: Api) -> None:
    api = light_api
    wanted = body(api)
    assert admin(api, "POST", "/v1/cameras", json=wanted).status_code == 201
    operator = api.headers(Role.operator)
    name = wanted["name"]
    for method, path, kwargs in (
        ("POST", "/v1/cameras", {"json": body(api)}),
        ("POST", f"/v1/cameras/{name}/pause", {}),
        ("POST", f"/v1/cameras/{name}/resume", {}),
        ("DELETE", f"/v1/cameras/{name}", {}),
    ):
        answer = no_secret(api.client.request(method, path, headers=operator, **kwargs))
        assert answer.status_code == 403, answer.text
        assert "role operator may not use cameras.write" in error_of(answer)["message"]
    shown = no_secret(api.client.get(f"/v1/cameras/{name}", headers=operator))
    assert shown.status_code == 200 and shown.json()["paused"] is False


def test_health_reported_by_a_node_is_shown_without_the_secret(light_api: Api) -> None:
    api = light_api
    wanted = body(api, detect_url=SUB)
    assert admin(api, "POST", "/v1/cameras", json=wanted).status_code == 201
    report = {
        "state": "reconnecting",
        "fps": 4.8,
        "last_error": f"could not open {URL}: 401 (user door-user:{SECRET})",
        "tried": [SUB, f"password {SECRET}"],
    }
    assert api.ops.report_camera_health(wanted["name"], "node-a", report)
    for role in (Role.admin, Role.operator):
        path = f"/v1/cameras/{wanted['name']}"
        shown = no_secret(api.client.get(path, headers=api.headers(role)))
        assert shown.status_code == 200, shown.text
        camera = shown.json()
        assert camera["node"] == "node-a" and camera["health_at"]
        assert camera["health"]["state"] == "reconnecting" and camera["health"]["fps"] == 4.8
        assert SHOWN in camera["health"]["last_error"]
        listed = no_secret(api.client.get("/v1/cameras", headers=api.headers(role)))
        assert listed.status_code == 200


def test_every_answer_of_the_camera_routes_holds_no_secret(light_api: Api) -> None:
    """A sweep over every route and method with a credentialed camera in place: whatever
    the answer, the password is not in it."""
    api = light_api
    wanted = body(api, detect_url=SUB)
    name = wanted["name"]
    assert admin(api, "POST", "/v1/cameras", json=wanted).status_code == 201
    calls = [
        ("GET", "/v1/cameras", None), ("GET", f"/v1/cameras/{name}", None),
        ("POST", "/v1/cameras", wanted), ("POST", f"/v1/cameras/{name}/pause", None),
        ("POST", f"/v1/cameras/{name}/pause", None), ("POST", f"/v1/cameras/{name}/resume", None),
        ("DELETE", f"/v1/cameras/{name}", None), ("DELETE", f"/v1/cameras/{name}", None),
    ]  # fmt: skip
    for role in Role:
        for method, path, _ in calls[:2]:
            no_secret(api.client.request(method, path, headers=api.headers(role)))
    for method, path, sent in calls:
        no_secret(api.client.request(method, path, json=sent, headers=api.headers(Role.admin)))
    ledger(api)
