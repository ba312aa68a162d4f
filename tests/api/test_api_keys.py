"""API keys through the API: made by an admin (the token shown once), used, revoked; the
ledger records both, never the token."""

from __future__ import annotations

import json

from faceledger.access import Role
from tests.api.apikit import HEADER, Api


def test_create_use_and_revoke_a_key(light_api: Api) -> None:
    api = light_api
    admin = api.headers(Role.admin)
    made = api.client.post(
        "/v1/keys", json={"name": "Night Shift Desk", "role": "operator"}, headers=admin
    )
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    key = made.json()["key"]
    assert token.startswith(f"fl_{key['id']}_")
    assert (key["name"], key["role"], key["created_by"], key["revoked_at"]) == (
        "Night Shift Desk",
        "operator",
        "admin-1",
        None,
    )

    # it works, with the operator's rights and no more
    assert api.client.get("/v1/events", headers={HEADER: token}).status_code == 200
    assert api.client.get("/v1/keys", headers={HEADER: token}).status_code == 403

    listed = api.client.get("/v1/keys", headers=admin)
    assert listed.status_code == 200
    assert key["id"] in {k["id"] for k in listed.json()}
    assert token not in listed.text
    assert token.split("_", 2)[2] not in listed.text

    revoked = api.client.delete(f"/v1/keys/{key['id']}", headers=admin)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    after = api.client.get("/v1/events", headers={HEADER: token})
    assert after.status_code == 401, after.text
    assert api.client.delete(f"/v1/keys/{key['id']}", headers=admin).status_code == 409
    assert api.client.delete("/v1/keys/0badc0de", headers=admin).status_code == 404
    assert api.client.delete("/v1/keys/not-hex!", headers=admin).status_code == 422

    entries = [e for e in api.ledger_json() if e["result"] and e["result"].get("key") == key["id"]]
    assert [(e["action"], e["actor"], e["role"]) for e in entries] == [
        ("key.create", "admin-1", "admin"),
        ("key.revoke", "admin-1", "admin"),
    ]
    for entry in entries:
        assert entry["result"] == {"key": key["id"], "name": "Night Shift Desk", "role": "operator"}
    exported = api.client.get("/v1/audit/export", headers=api.headers(Role.auditor)).text
    secret = token.split("_", 2)[2]
    assert secret not in exported
    assert secret not in json.dumps(api.ledger_json())


def test_key_requests_are_checked(light_api: Api) -> None:
    admin = light_api.headers(Role.admin)
    for body in (
        {"name": "x", "role": "superuser"},
        {"name": "", "role": "operator"},
        {"name": "line\nbreak", "role": "operator"},
        {"role": "operator"},
    ):
        response = light_api.client.post("/v1/keys", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
    blank = light_api.client.post(
        "/v1/keys", json={"name": "   ", "role": "auditor"}, headers=admin
    )
    assert blank.status_code == 400, blank.text  # a ConfigError: a key needs a holder's name


def test_an_admin_may_make_a_key_for_every_role(light_api: Api) -> None:
    admin = light_api.headers(Role.admin)
    for role in Role:
        made = light_api.client.post(
            "/v1/keys", json={"name": f"holder of {role.value}", "role": role.value}, headers=admin
        )
        assert made.status_code == 201, made.text
        token = made.json()["token"]
        health = light_api.client.get("/healthz", headers={HEADER: token})
        assert health.status_code == 200, health.text
