"""Review through the API: a two-person watch list, an event naming one of its subjects,
two different reviewers to confirm it, and the evidence crop (each viewing recorded)."""

from __future__ import annotations

import pytest
from support.events import decision

from faceledger.access import Role
from tests.api.apikit import HEADER, Api


@pytest.fixture(scope="module")
def watched(light_api: Api) -> str:
    """A subject on a two-person watch list (made by the admin, used by the enroller)."""
    admin, enroller = light_api.headers(Role.admin), light_api.headers(Role.enroller)
    made = light_api.client.post(
        "/v1/watchlists", json={"name": "wanted", "two_person": True}, headers=admin
    )
    assert made.status_code == 201, made.text
    assert made.json()["review"] is True
    assert made.json()["reviews_needed"] == 2
    again = light_api.client.post("/v1/watchlists", json={"name": "wanted"}, headers=admin)
    assert again.status_code in (400, 409), again.text  # the name is taken
    seen = light_api.client.get("/v1/watchlists", headers=enroller)
    assert [w["name"] for w in seen.json()] == ["wanted"]
    subject = light_api.client.post(
        "/v1/subjects",
        json={
            "name": "wanted-person",
            "legal_basis": "court order 17/2024",
            "watchlists": ["wanted"],
        },
        headers=enroller,
    )
    assert subject.status_code == 201, subject.text
    assert subject.json()["watchlists"] == ["wanted"]
    lists = light_api.client.get("/v1/watchlists", headers=admin).json()
    assert lists[0]["subjects"] == ["wanted-person"]
    return "wanted-person"


def review(api: Api, event_id: int, token: str, decision: str = "confirm", **extra: str) -> object:
    return api.client.post(
        f"/v1/events/{event_id}/review",
        json={"decision": decision, **extra},
        headers={HEADER: token},
    )


def test_two_person_rule(light_api: Api, watched: str) -> None:
    api = light_api
    event_id = api.ops.events.add(decision(watched, track=1), "gate-4", "mobilefacenet")
    reviewer_a = api.tokens[Role.reviewer]
    reviewer_b = api.key("reviewer-2", Role.reviewer)
    operator = api.headers(Role.operator)

    pending = api.client.get("/v1/events", params={"review": "pending"}, headers=operator)
    assert pending.status_code == 200, pending.text
    listed = {e["id"]: e for e in pending.json()}
    assert event_id in listed
    assert listed[event_id]["subject"] == watched
    assert listed[event_id]["reviews_needed"] == 2

    first = review(api, event_id, reviewer_a, comment="looks like them")
    assert first.status_code == 200, first.text
    assert (first.json()["review"], first.json()["confirmations"]) == ("pending", 1)
    assert first.json()["reviews"][0]["reviewer"] == "reviewer-1"

    same = review(api, event_id, reviewer_a)
    assert same.status_code == 409, same.text
    assert "two-person" in same.json()["error"]["message"]

    second = review(api, event_id, reviewer_b)
    assert second.status_code == 200, second.text
    assert (second.json()["review"], second.json()["confirmations"]) == ("confirmed", 2)
    assert [r["reviewer"] for r in second.json()["reviews"]] == ["reviewer-1", "reviewer-2"]

    third = review(api, event_id, api.key("reviewer-3", Role.reviewer), "reject")
    assert third.status_code == 409, third.text

    shown = api.client.get(f"/v1/events/{event_id}", headers=operator).json()
    assert shown["review"] == "confirmed"
    assert len(shown["reviews"]) == 2
    still = api.client.get("/v1/events", params={"review": "pending"}, headers=operator).json()
    assert event_id not in {e["id"] for e in still}

    entries = [e for e in api.ledger_json() if e["action"] == "event.review"]
    mine = [e for e in entries if e["result"]["event"] == event_id]
    assert [(e["actor"], e["result"]["review"]) for e in mine] == [
        ("reviewer-1", "pending"),
        ("reviewer-2", "confirmed"),
    ]


def test_one_rejection_decides(light_api: Api, watched: str) -> None:
    api = light_api
    event_id = api.ops.events.add(decision(watched, track=2), "gate-4", "mobilefacenet")
    rejected = review(api, event_id, api.tokens[Role.reviewer], "reject", comment="not them")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["review"] == "rejected"
    late = review(api, event_id, api.key("reviewer-2", Role.reviewer))
    assert late.status_code == 409, late.text
    assert "already rejected" in late.json()["error"]["message"]


def test_review_input_is_checked(light_api: Api, watched: str) -> None:
    api = light_api
    event_id = api.ops.events.add(decision(watched, track=3), "gate-4", "mobilefacenet")
    token = api.tokens[Role.reviewer]
    assert review(api, event_id, token, "maybe").status_code == 422
    assert review(api, 999_999, token).status_code == 404
    assert review(api, event_id, token, comment="x" * 2001).status_code == 422
    # nothing of that was recorded as a review
    assert (
        api.client.get(f"/v1/events/{event_id}", headers=api.headers(Role.reviewer)).json()[
            "reviews"
        ]
        == []
    )


def test_the_crop_is_a_png_and_each_viewing_is_recorded(light_api: Api, watched: str) -> None:
    api = light_api
    event_id = api.ops.events.add(decision(watched, track=4), "gate-4", "mobilefacenet")
    before = len(api.ledger_json())
    for role in (Role.operator, Role.reviewer):
        response = api.client.get(f"/v1/events/{event_id}/crop", headers=api.headers(role))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    views = api.ledger_json()[before:]
    assert [(e["action"], e["actor"], e["result"]) for e in views] == [
        ("event.crop.view", "operator-1", {"event": event_id}),
        ("event.crop.view", "reviewer-1", {"event": event_id}),
    ]
    # a stranger's crop is not kept (by default): 404, and nothing recorded
    unknown = api.ops.events.add(decision(None, score=0.2, track=5), "gate-4", "mobilefacenet")
    missing = api.client.get(f"/v1/events/{unknown}/crop", headers=api.headers(Role.operator))
    assert missing.status_code == 404, missing.text
    assert len(api.ledger_json()) == before + 2
    none = api.client.get("/v1/events/999999/crop", headers=api.headers(Role.operator))
    assert none.status_code == 404
