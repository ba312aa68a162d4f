"""Inputs at the edges that once made the API answer 5xx (found by fuzzing), kept as
regression tests: each must be a 4xx (or a plain answer), never a server error."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

from faceledger.access import Role
from tests.api.apikit import Api

EXTREME_MOMENTS = [
    "0001-01-01T00:00:00+05:00",  # valid ISO, but before UTC's year 1
    "9999-12-31T23:59:59-05:00",  # after UTC's year 9999
]


def assert_client_error(response: httpx.Response, *codes: int) -> None:
    assert response.status_code in (codes or range(400, 500)), response.text
    assert response.json()["error"]["message"]


@pytest.mark.parametrize("moment", EXTREME_MOMENTS)
@pytest.mark.parametrize(
    ("route", "role"), [("/v1/events", Role.operator), ("/v1/audit", Role.auditor)]
)
def test_a_moment_without_a_utc_form_is_422(
    light_api: Api, route: str, role: Role, moment: str
) -> None:
    response = light_api.client.get(
        route, params={"since": moment}, headers=light_api.headers(role)
    )
    assert_client_error(response, 422)
    assert "since" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("route", "role"), [("/v1/events", Role.operator), ("/v1/audit", Role.auditor)]
)
def test_naive_and_edge_moments_still_work(light_api: Api, route: str, role: Role) -> None:
    for moment in (
        "0001-01-01T00:00:00",
        "9999-12-31T23:59:59",
        "2024-05-01",
        "2024-05-01T12:00:00+02:00",
    ):
        response = light_api.client.get(
            route, params={"since": moment}, headers=light_api.headers(role)
        )
        assert response.status_code == 200, (moment, response.text)


@pytest.mark.parametrize("template_id", [2**63, 2**64 + 1, 10**30])
def test_a_template_id_beyond_sqlite_is_422(light_api: Api, template_id: int) -> None:
    response = light_api.client.delete(
        f"/v1/subjects/someone/templates/{template_id}", headers=light_api.headers(Role.enroller)
    )
    assert_client_error(response, 422)


def test_the_largest_sqlite_id_is_a_plain_404(light_api: Api) -> None:
    response = light_api.client.delete(
        f"/v1/subjects/someone/templates/{2**63 - 1}", headers=light_api.headers(Role.enroller)
    )
    assert_client_error(response, 404)


@pytest.mark.parametrize("event_id", [2**63, 10**30])
def test_an_event_id_beyond_sqlite_is_422(light_api: Api, event_id: int) -> None:
    for suffix in ("", "/crop"):
        response = light_api.client.get(
            f"/v1/events/{event_id}{suffix}", headers=light_api.headers(Role.operator)
        )
        assert_client_error(response, 422)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "   ", "legal_basis": "signed consent"},
        {"name": "blank-basis", "legal_basis": "     "},
        {"name": "short-basis", "legal_basis": "  ab  "},
    ],
    ids=["blank-name", "blank-basis", "short-basis"],
)
def test_a_blank_name_or_basis_is_422(light_api: Api, body: dict[str, str]) -> None:
    response = light_api.client.post(
        "/v1/subjects", json=body, headers=light_api.headers(Role.enroller)
    )
    assert_client_error(response, 422)


@pytest.mark.parametrize("size", [(1, 5000), (5000, 1)], ids=["tall", "wide"])
def test_an_extreme_aspect_ratio_is_no_server_error(api: Api, size: tuple[int, int]) -> None:
    out = io.BytesIO()
    Image.new("RGB", size, (128, 128, 128)).save(out, "PNG")
    response = api.client.post(
        "/v1/detect",
        files={"image": ("thin.png", out.getvalue())},
        headers=api.headers(Role.operator),
    )
    assert response.status_code < 500, response.text


def test_error_messages_do_not_show_where_the_database_is(light_api: Api) -> None:
    for path in ("/v1/subjects/nobody-here", "/v1/events/987654"):
        role = Role.enroller if "subjects" in path else Role.operator
        response = light_api.client.get(path, headers=light_api.headers(role))
        assert response.status_code == 404
        message = response.json()["error"]["message"]
        assert light_api.db not in message and light_api.ops.db.name not in message
        for word in ("sqlite", "postgres", "127.0.0.1", light_api.db.rsplit("/", 1)[-1]):
            assert word not in message, message
        assert path.rsplit("/", 1)[-1] in message  # it still names what was not found


@pytest.mark.parametrize(
    "message",
    [
        "{shown}: no subject named 'x'",
        "{url}: not a faceledger gallery (boom)",
        "{secret}: the database is busy; try again",
        "postgresql+psycopg://other:***@db.internal:5433/elsewhere: cannot connect",
        'connection to server at "127.0.0.1", port 5432 failed: Connection refused',
        'connection to server on socket "/run/postgresql/.s.PGSQL.5432" failed',
    ],
)
def test_a_postgresql_url_or_address_is_hidden_too(message: str) -> None:
    from types import SimpleNamespace

    from faceledger.api.errors import _without_paths, database_forms
    from faceledger.db.url import parse_db

    where = parse_db("postgresql://alice:s3cret@db.internal:5433/faceledger")
    ops: Any = SimpleNamespace(db=SimpleNamespace(url=where, name=where.shown))
    text = message.format(
        shown=where.shown,
        url=str(where.url),
        secret=where.url.render_as_string(hide_password=False),
    )
    hidden = _without_paths(text, database_forms(ops))
    for leak in ("db.internal", "alice", "s3cret", "5433", "5432", "127.0.0.1", "postgres"):
        assert leak not in hidden, hidden
    assert "the gallery" in hidden or "the database server" in hidden
