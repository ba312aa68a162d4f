"""Every role against every route: the policy in ``apikit.POLICY`` is written out by hand
(not derived from ``faceledger.access``), and the set of routes it covers, with the few
public ones in ``apikit.PUBLIC``, must equal the app's, so a new route cannot go unchecked.

A denied call is a 403 with a JSON error; an allowed one is anything but 401/403 (a 404 or
422 for these minimal requests proves the gate was passed). No key, a garbage key and a
revoked key are 401 everywhere. None of this needs a model or the shared data."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from faceledger.access import Role
from tests.api.apikit import (
    HEADER,
    POLICY,
    PUBLIC,
    PUBLIC_DOCS,
    SIGN_IN,
    Api,
    concrete,
    operations,
    route_entries,
)

OPERATIONS = sorted(POLICY)
CASES = [(role, method, path) for method, path in OPERATIONS for role in Role]


def call(api: Api, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    """The smallest request for a route: parameters that name nothing, no body."""
    return api.client.request(method, concrete(path), headers=headers)


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] and error["message"]
    return error


def test_the_policy_covers_exactly_the_apps_routes(light_api: Api) -> None:
    app_ops = operations(light_api.app)
    assert not set(POLICY) & set(PUBLIC)
    covered = set(POLICY) | set(PUBLIC) | {SIGN_IN}
    assert app_ops == covered, (
        f"routes without a policy: {sorted(app_ops - covered)}; "
        f"policy for routes that do not exist: {sorted(covered - app_ops)}"
    )
    # the walk over nested routers misses nothing the OpenAPI schema documents
    documented = {
        (method.upper(), path)
        for path, item in light_api.app.openapi()["paths"].items()
        for method in item
    }
    assert documented <= app_ops


def test_only_the_documentation_is_outside_the_api(light_api: Api) -> None:
    from fastapi.routing import APIRoute

    others = {
        path
        for route, path, _ in route_entries(light_api.app)
        if not (isinstance(route, APIRoute) and route.include_in_schema)
    }
    assert others == PUBLIC_DOCS


@pytest.mark.parametrize(("method", "path"), sorted(PUBLIC))
def test_a_public_route_answers_without_a_key_and_reveals_nothing(
    light_api: Api, method: str, path: str
) -> None:
    expected = PUBLIC[(method, path)]
    for headers in ({}, {HEADER: "letmein"}, light_api.headers(Role.admin)):
        response = call(light_api, method, path, headers)
        assert response.status_code == 200, response.text
        assert response.json() == expected  # the same few bytes, whoever asks
        assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(("role", "method", "path"), CASES, ids=lambda v: getattr(v, "value", v))
def test_role_route_matrix(light_api: Api, role: Role, method: str, path: str) -> None:
    response = call(light_api, method, path, light_api.headers(role))
    if role in POLICY[(method, path)]:
        assert response.status_code not in (401, 403), (role, method, path, response.text)
        assert response.status_code < 500, response.text
    else:
        assert response.status_code == 403, (role, method, path, response.text)
        error = error_of(response)
        assert error["type"] == "Forbidden"
        assert f"role {role.value} " in error["message"]


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_key_is_401_everywhere(light_api: Api, method: str, path: str) -> None:
    response = call(light_api, method, path, {})
    assert response.status_code == 401, response.text
    assert error_of(response)["type"] == "Unauthorized"
    assert response.headers["www-authenticate"] == HEADER


GARBAGE = {
    "empty-ish": " ",
    "not-a-token": "letmein",
    "well-formed-unknown": "fl_deadbeef_" + "A" * 43,
    "prefix-only": "fl_",
    "over-long": "fl_" + "x" * 5000,
    "unicode": "fl_ключ",
}


@pytest.mark.parametrize("token", GARBAGE.values(), ids=GARBAGE.keys())
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_garbage_key_is_401(light_api: Api, method: str, path: str, token: str) -> None:
    headers = {HEADER: token}
    try:
        response = call(light_api, method, path, headers)
    except UnicodeEncodeError:
        # httpx itself refuses non-ASCII header values: send the raw UTF-8 bytes
        response = light_api.client.request(
            method, concrete(path), headers={HEADER: token.encode("utf-8")}
        )
    assert response.status_code == 401, response.text
    assert error_of(response)["type"] == "Unauthorized"


@pytest.fixture(scope="module")
def revoked(light_api: Api) -> str:
    for role in Role:
        light_api.key(f"revoked-{role.value}", role)
    token = light_api.key("revoked-admin", Role.admin)
    for name in (f"revoked-{role.value}" for role in Role):
        key_id = light_api.extra[name].split("_")[1]
        light_api.ops.keys.revoke(key_id)
    return token


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_revoked_key_is_401(
    light_api: Api, revoked: str, role: Role, method: str, path: str
) -> None:
    token = light_api.extra[f"revoked-{role.value}"]
    response = call(light_api, method, path, {HEADER: token})
    assert response.status_code == 401, response.text
    assert "revoked" in error_of(response)["message"]


def test_a_403_names_no_data_and_comes_before_any_lookup(light_api: Api) -> None:
    """A denied caller learns nothing about what exists: the same 403 for a subject that
    exists and one that does not."""
    enroller = light_api.headers(Role.enroller)
    made = light_api.client.post(
        "/v1/subjects",
        json={"name": "gate-check", "legal_basis": "consent form 7"},
        headers=enroller,
    )
    assert made.status_code == 201, made.text
    for role in (Role.admin, Role.operator, Role.reviewer, Role.auditor):
        there = light_api.client.get("/v1/subjects/gate-check", headers=light_api.headers(role))
        absent = light_api.client.get("/v1/subjects/nobody-here", headers=light_api.headers(role))
        assert there.status_code == absent.status_code == 403
        assert there.json() == absent.json()
        assert "gate-check" not in there.text
