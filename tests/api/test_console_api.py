"""What the operator console stands on, through the API: sessions (an HttpOnly,
SameSite=Strict cookie for a key; CSRF on every state-changing request), the live event
feed, enrolled templates beside an event's evidence (each viewing recorded), a subject's
history, the status page's figures, and documentation that needs no CDN."""

from __future__ import annotations

import json
import re
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from support.events import decision

from faceledger.access import Role
from faceledger.api.sessions import COOKIE, CSRF_HEADER
from faceledger.operations import Acting
from tests.api.apikit import Api, photo


def signed_in(api: Api, role: Role) -> tuple[TestClient, dict[str, str]]:
    """A fresh client signed in with ``role``'s key: (client, its session JSON)."""
    client = TestClient(api.app)
    answer = client.post("/v1/session", json={"api_key": api.tokens[role]})
    assert answer.status_code == 200, answer.text
    return client, answer.json()


def test_sign_in_sets_an_http_only_strict_cookie_and_never_returns_the_key(
    light_api: Api,
) -> None:
    client = TestClient(light_api.app)
    token = light_api.tokens[Role.reviewer]
    answer = client.post("/v1/session", json={"api_key": token})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["name"], body["role"]) == ("reviewer-1", "reviewer")
    assert body["permissions"] == ["events.read", "events.review", "health"]
    assert body["csrf"] and token not in answer.text
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert token not in cookie
    assert answer.headers["cache-control"] == "no-store"
    again = client.get("/v1/session")
    assert again.json()["csrf"] == body["csrf"]


@pytest.mark.parametrize(
    "body",
    [{"api_key": "fl_deadbeef_" + "A" * 43}, {"api_key": "letmein"}, {}, {"api_key": ""}],
)
def test_a_bad_key_or_body_signs_no_one_in(light_api: Api, body: dict[str, str]) -> None:
    client = TestClient(light_api.app)
    answer = client.post("/v1/session", json=body)
    assert answer.status_code in (401, 422), answer.text
    assert "set-cookie" not in answer.headers
    assert client.get("/v1/session").status_code == 401


def test_a_cross_site_form_cannot_sign_in_and_a_big_body_is_refused(light_api: Api) -> None:
    client = TestClient(light_api.app)
    form = client.post("/v1/session", data={"api_key": light_api.tokens[Role.admin]})
    assert form.status_code == 422, form.text  # a form post is not JSON
    huge = client.post("/v1/session", json={"api_key": "x" * 10_000})
    assert huge.status_code == 413, huge.text


def test_the_session_does_what_its_role_may_and_every_change_needs_the_csrf_token(
    light_api: Api,
) -> None:
    enroller, session = signed_in(light_api, Role.enroller)
    assert enroller.get("/v1/subjects").status_code == 200
    assert enroller.get("/v1/audit/verify").status_code == 403  # not the enroller's
    subject = {"name": "csrf-check", "legal_basis": "consent form 9"}
    missing = enroller.post("/v1/subjects", json=subject)
    assert missing.status_code == 403, missing.text
    assert CSRF_HEADER in missing.json()["error"]["message"]
    wrong = enroller.post("/v1/subjects", json=subject, headers={CSRF_HEADER: "guess"})
    assert wrong.status_code == 403, wrong.text
    assert not light_api.ops.has_subject("csrf-check")
    made = enroller.post("/v1/subjects", json=subject, headers={CSRF_HEADER: session["csrf"]})
    assert made.status_code == 201, made.text
    # the ledger names the key's holder, as for a request with the key itself
    entry = light_api.ledger_json()[-1]
    assert (entry["actor"], entry["role"], entry["action"]) == (
        "enroller-1",
        "enroller",
        "subject.create",
    )
    wipe = enroller.delete("/v1/subjects/csrf-check")
    assert wipe.status_code == 403 and light_api.ops.has_subject("csrf-check")


def test_sign_out_and_revocation_end_the_session(light_api: Api) -> None:
    client, session = signed_in(light_api, Role.auditor)
    assert client.get("/v1/audit/verify").status_code == 200
    assert client.delete("/v1/session").status_code == 403  # sign-out needs the token too
    out = client.delete("/v1/session", headers={CSRF_HEADER: session["csrf"]})
    assert out.status_code == 204, out.text
    assert client.get("/v1/audit/verify").status_code == 401
    # a session whose key is revoked ends at once
    token = light_api.key("revoke-me", Role.auditor)
    other = TestClient(light_api.app)
    assert other.post("/v1/session", json={"api_key": token}).status_code == 200
    assert other.get("/v1/audit/verify").status_code == 200
    light_api.ops.keys.revoke(token.split("_")[1])
    ended = other.get("/v1/audit/verify")
    assert ended.status_code == 401 and "revoked" in ended.json()["error"]["message"]


def test_a_key_header_wins_over_a_cookie(light_api: Api) -> None:
    client, _ = signed_in(light_api, Role.auditor)
    who = client.get("/v1/session", headers=light_api.headers(Role.operator))
    assert who.json()["role"] == "operator" and who.json()["csrf"] is None


def test_the_console_and_docs_are_served_from_here_with_a_strict_policy(light_api: Api) -> None:
    client = light_api.client
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy and "unsafe" not in policy
    assert page.headers["x-frame-options"] == "DENY"
    scripts = re.findall(r'src="([^"]+)"', page.text)
    assert scripts and all(s.startswith("/console/") for s in scripts), scripts
    for asset in scripts:
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert answer.headers["content-security-policy"] == policy
    assert client.get("/console/../pyproject.toml").status_code == 404
    docs = client.get("/docs")
    assert docs.status_code == 200
    linked = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert linked and all(u.startswith("/") for u in linked), linked  # nothing from a CDN
    for url in linked:
        assert client.get(url).status_code == 200, url
    assert client.get("/redoc").status_code == 404


def test_the_status_shows_models_gallery_queues_retention_and_cameras(light_api: Api) -> None:
    light_api.ops.events.add(decision(None, track=7), "status-cam", "mobilefacenet")
    answer = light_api.client.get("/v1/status", headers=light_api.headers(Role.auditor))
    assert answer.status_code == 200, answer.text
    status = answer.json()
    assert status["model"] == "mobilefacenet" and status["profile"] == "fast"
    assert status["models_loaded"] is False  # this app loads them on first use
    assert status["retention"]["keep_evidence_days"] == 90
    assert status["retention"]["keep_unknown_days"] is None
    assert 0 < status["quality_floor"] < 1
    seen = {c["camera"]: c for c in status["cameras"]}
    assert seen["status-cam"]["events"] >= 1


def read_feed(
    client: TestClient, seconds: float, ready: list[str] | None = None, **headers: str
) -> list[dict[str, object]]:
    """The ``event`` messages of the live feed, read for ``seconds`` (the ``ready``
    message's data goes into ``ready``)."""
    events: list[dict[str, object]] = []
    url = f"/v1/events/stream?seconds={seconds}"
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "event":
                events.append(json.loads(line[6:]))
            elif line.startswith("data: ") and kind == "ready" and ready is not None:
                ready.append(line[6:])
    return events


def test_the_live_feed_sends_new_and_reviewed_events(light_api: Api) -> None:
    api = light_api
    api.client.post(
        "/v1/watchlists",
        json={"name": "feed-list", "review": True},
        headers=api.headers(Role.admin),
    )
    api.client.post(
        "/v1/subjects",
        json={"name": "feed-person", "legal_basis": "court order 3", "watchlists": ["feed-list"]},
        headers=api.headers(Role.enroller),
    )
    before = api.ops.events.add(decision("feed-person", track=1), "cam-a", "mobilefacenet")
    made: list[int] = []

    def later() -> None:
        time.sleep(0.6)
        made.append(api.ops.events.add(decision("feed-person", track=2), "cam-a", "mobilefacenet"))
        time.sleep(0.4)
        api.ops.review(Acting("reviewer-1", "reviewer"), before, "reject", "not them")

    worker = threading.Thread(target=later)
    worker.start()
    reviewer, _ = signed_in(api, Role.reviewer)
    ready: list[str] = []
    seen = read_feed(reviewer, 2.5, ready)
    worker.join()
    ids = [(e["id"], e["review"]) for e in seen]
    assert (made[0], "pending") in ids  # made while the feed was open
    assert (before, "rejected") in ids  # reviewed while the feed was open
    assert all(e["id"] >= before for e in seen)  # nothing from before it opened
    assert ready and re.fullmatch(r"\d+\.\d+", ready[0])  # where it started, first
    # a browser that reconnects with Last-Event-ID gets what it missed
    cursor = f"{before - 1}.0"
    again = read_feed(reviewer, 0.5, **{"Last-Event-ID": cursor})
    assert {before, made[0]} <= {e["id"] for e in again}
    bad = reviewer.get("/v1/events/stream?seconds=0.2", headers={"Last-Event-ID": "x; drop"})
    assert bad.status_code == 400, bad.text
    nobody = httpx.Client(transport=api.client._transport, base_url="http://testserver")
    assert nobody.get("/v1/events/stream?seconds=0.2").status_code == 401


def test_an_events_templates_beside_its_evidence_each_viewing_recorded(api: Api) -> None:
    enroller = api.headers(Role.enroller)
    made = api.client.post(
        "/v1/subjects", json={"name": "side-by-side", "legal_basis": "consent 12"}, headers=enroller
    )
    assert made.status_code == 201, made.text
    upload = {
        "images": ("obama.jpg", photo("fr_obama", "face_recognition_obama.jpg"), "image/jpeg")
    }
    enrolled = api.client.post(
        "/v1/subjects/side-by-side/templates", files=upload, headers=enroller
    )
    assert enrolled.status_code == 201, enrolled.text
    event_id = api.ops.events.add(decision("side-by-side"), "gate-9", api.ops.model_id)
    reviewer = api.headers(Role.reviewer)
    listed = api.client.get(f"/v1/events/{event_id}/templates", headers=reviewer)
    assert listed.status_code == 200, listed.text
    (template,) = listed.json()
    assert template["source_name"] == "obama.jpg" and template["quality_score"] >= 0.75
    crop = api.client.get(
        f"/v1/events/{event_id}/templates/{template['id']}/crop", headers=reviewer
    )
    assert crop.status_code == 200 and crop.headers["content-type"] in ("image/jpeg", "image/png")
    assert crop.headers["cache-control"] == "private, no-store"
    entry = api.ledger_json()[-1]
    assert entry["seq"] == int(crop.headers["x-ledger-seq"])
    assert (entry["action"], entry["actor"]) == ("template.crop.view", "reviewer-1")
    assert entry["result"] == {"event": event_id, "template": template["id"]}
    # a template of someone else is not this event's to show
    unknown = api.ops.events.add(decision(None, track=3), "gate-9", api.ops.model_id)
    assert api.client.get(f"/v1/events/{unknown}/templates", headers=reviewer).json() == []
    other = api.client.get(
        f"/v1/events/{unknown}/templates/{template['id']}/crop", headers=reviewer
    )
    assert other.status_code == 404, other.text
    # the enroller sees the same thumbnail on the subject's page, also recorded
    thumb = api.client.get(
        f"/v1/subjects/side-by-side/templates/{template['id']}/crop", headers=enroller
    )
    assert thumb.status_code == 200 and thumb.content == crop.content
    assert api.ledger_json()[-1]["result"] == {
        "subject": "side-by-side",
        "template": template["id"],
    }
    wrong = api.client.get(f"/v1/subjects/nobody/templates/{template['id']}/crop", headers=enroller)
    assert wrong.status_code == 404
    history = api.client.get("/v1/subjects/side-by-side/history", headers=enroller).json()
    assert [h["action"] for h in history] == ["subject.create", "enroll"]
    assert history[1]["detail"] == "1 template(s) enrolled"
    assert all(h["actor"] == "enroller-1" for h in history)


def test_the_audit_list_gives_the_newest_entries_first_when_asked(light_api: Api) -> None:
    auditor = light_api.headers(Role.auditor)
    oldest = light_api.client.get("/v1/audit", params={"limit": 3}, headers=auditor).json()
    newest = light_api.client.get(
        "/v1/audit", params={"limit": 3, "order": "newest"}, headers=auditor
    ).json()
    every = light_api.client.get("/v1/audit", params={"limit": 10000}, headers=auditor).json()
    assert [e["seq"] for e in oldest] == [e["seq"] for e in every[:3]]
    assert [e["seq"] for e in newest] == [e["seq"] for e in every[-3:]][::-1]
    wrong = light_api.client.get("/v1/audit", params={"order": "sideways"}, headers=auditor)
    assert wrong.status_code == 422
