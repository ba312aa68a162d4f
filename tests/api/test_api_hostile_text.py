"""Hostile text over the REST API: look-alike and unshowable names are refused where
subjects are made (422, naming the character: the rule the CLI shares), a purpose of
spaces or control characters is a 422, and subjects an older gallery holds under such
names still list, show and erase (written here through the gallery store directly)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

from faceledger.access import Role
from faceledger.cli.main import app as cli
from tests.api.apikit import Api, no_face_png
from tests.api.conftest import ApiFactory, Backend

HOSTILE = "\x1b]0;pwned\x07\x1b[2J"
"""Sets a terminal's title and clears its screen, if it reaches one raw."""


@pytest.fixture(scope="module")
def hostile(backend: Backend, make_api: ApiFactory) -> Api:
    """An app of its own (no models loaded), so that the names made here meet nobody's."""
    return make_api(f"hostile-{backend}", backend=backend, load=False)


def tag() -> str:
    return uuid.uuid4().hex[:6]


def error_message(response: httpx.Response) -> str:
    message: str = response.json()["error"]["message"]
    return message


def create(api: Api, name: str, basis: str = "signed consent, 2026-11") -> httpx.Response:
    return api.client.post(
        "/v1/subjects",
        json={"name": name, "legal_basis": basis},
        headers=api.headers(Role.enroller),
    )


def names(api: Api) -> list[str]:
    response = api.client.get("/v1/subjects", headers=api.headers(Role.enroller))
    assert response.status_code == 200, response.text
    return [s["name"] for s in response.json()]


# ---- new names ------------------------------------------------------------------------------

REFUSED = [
    ("obama\u200b", "ZERO WIDTH SPACE (U+200B)"),
    ("\u202eobama", "RIGHT-TO-LEFT OVERRIDE (U+202E)"),
    ("ob\u2066ama\u2069", "LEFT-TO-RIGHT ISOLATE (U+2066)"),
    ("a/b", "SOLIDUS (U+002F)"),
    ("a\\b", "REVERSE SOLIDUS (U+005C)"),
    ("tab\there", "CHARACTER TABULATION (U+0009)"),
    ("esc\x1b[2J", "ESCAPE (U+001B)"),
    ("x" * 300, "300 characters long; at most 200"),
]


@pytest.mark.parametrize(("name", "named"), REFUSED, ids=[n for _, n in REFUSED])
def test_a_look_alike_or_unshowable_name_is_422(hostile: Api, name: str, named: str) -> None:
    before = len(hostile.ledger_json())
    response = create(hostile, name)
    assert response.status_code == 422, response.text
    assert named in error_message(response)
    assert name not in names(hostile)
    assert len(hostile.ledger_json()) == before


def test_a_look_alike_of_an_enrolled_name_is_refused(hostile: Api) -> None:
    name = f"obama-{tag()}"
    assert create(hostile, name).status_code == 201
    for look_alike in (f"{name}\u200b", f"\u202d{name}", f"{name}\u00ad"):
        response = create(hostile, look_alike)
        assert response.status_code == 422, response.text
    assert names(hostile).count(name) == 1


def test_a_name_is_kept_in_nfc_so_a_decomposed_twin_is_a_conflict(hostile: Api) -> None:
    suffix = tag()
    response = create(hostile, f"Jose\u0301-{suffix}")
    assert response.status_code == 201, response.text
    assert response.json()["name"] == f"José-{suffix}"
    assert create(hostile, f"José-{suffix}").status_code == 409


@pytest.mark.parametrize("basis", ["\x00\x00\x00", "\x1b\x1b\x1b\x1b", " \t\x07 ", "a\x00\x00b"])
def test_a_basis_of_control_characters_is_422(hostile: Api, basis: str) -> None:
    response = create(hostile, f"basis-{tag()}", basis)
    assert response.status_code == 422, response.text
    assert "legal" in error_message(response)  # body.legal_basis: ..., or legal basis is ...


def test_a_basis_is_kept_clean(hostile: Api) -> None:
    name = f"clean-{tag()}"
    assert create(hostile, name, f"consent{HOSTILE} form").status_code == 201
    entry = hostile.ledger_json()[-1]
    assert entry["result"]["legal_basis"] == "consent]0;pwned[2J form"


# ---- purposes -------------------------------------------------------------------------------

BLANK_PURPOSES = ["   ", "\t\t\t", "\x00\x00\x00", "\x1b\x1b\x1b", " \u2028 ", "\x1b[A"]


@pytest.mark.parametrize("purpose", BLANK_PURPOSES, ids=repr)
@pytest.mark.parametrize("route", ["/v1/identify", "/v1/verify"])
def test_a_blank_purpose_is_422_and_not_recorded(hostile: Api, route: str, purpose: str) -> None:
    before = len(hostile.ledger_json())
    images = ["image"] if route == "/v1/identify" else ["image_a", "image_b"]
    response = hostile.client.post(
        route,
        files={field: ("probe.png", no_face_png()) for field in images},
        data={"purpose": purpose},
        headers=hostile.headers(Role.operator),
    )
    assert response.status_code == 422, response.text
    message = error_message(response)
    assert "purpose" in message and ("empty" in message or "too short" in message)
    assert len(hostile.ledger_json()) == before, "a refused search was recorded"


def test_a_hostile_purpose_is_recorded_clean_and_listed_safely(api: Api) -> None:
    response = api.client.post(
        "/v1/identify",
        files={"image": ("probe.png", no_face_png())},
        data={"purpose": f"door check{HOSTILE}", "case_ref": f"T-1{HOSTILE}"},
        headers=api.headers(Role.operator),
    )
    assert response.status_code == 200, response.text
    seq = response.json()["ledger_seq"]
    entry = next(e for e in api.ledger_json() if e["seq"] == seq)
    assert (entry["purpose"], entry["case_ref"]) == ("door check]0;pwned[2J", "T-1]0;pwned[2J")
    listed = CliRunner().invoke(cli, ["audit", "list", "--db", api.db], env={"COLUMNS": "300"})
    assert listed.exit_code == 0, listed.stderr
    assert "\x1b" not in listed.stdout and "\x07" not in listed.stdout
    assert "door check]0;pwned[2J (case T-1]0;pwned[2J)" in listed.stdout


# ---- names an older gallery holds -----------------------------------------------------------

LEGACY = ["tab\there", "esc\x1b[31mred", "zw\u200bobama", "\u202eevil", "back\\slash", "[red]alert"]


def test_legacy_names_list_show_and_erase(hostile: Api) -> None:
    suffix = tag()
    stored = [f"{name}-{suffix}" for name in LEGACY]
    if hostile.backend == "sqlite":  # PostgreSQL holds names to the column's 200
        stored.append("y" * 300 + suffix)
    for name in stored:  # as a gallery made before names were checked holds them
        hostile.ops.gallery.create_subject(name, "signed consent, 2019")
    assert set(stored) <= set(names(hostile))
    headers = hostile.headers(Role.enroller)
    for name in stored:
        path = f"/v1/subjects/{quote(name, safe='')}"
        shown = hostile.client.get(path, headers=headers)
        assert shown.status_code == 200, (name, shown.text)
        assert shown.json()["name"] == name
        assert hostile.client.get(f"{path}/templates", headers=headers).json() == []
        erased = hostile.client.delete(path, headers=headers)
        assert erased.status_code == 200, (name, erased.text)
        assert erased.json()["subject"] == name
        assert hostile.ledger_json()[-1]["action"] == "subject.delete"
        assert hostile.client.get(path, headers=headers).status_code == 404
    assert not set(stored) & set(names(hostile))


@pytest.mark.parametrize("segment", ["%00", "a%00b", "x%00y%20z", "%ED%A0%80", "%FF"])
def test_a_name_no_gallery_can_hold_is_404(hostile: Api, segment: str) -> None:
    headers = hostile.headers(Role.enroller)
    for method in ("GET", "DELETE"):
        response = hostile.client.request(method, f"/v1/subjects/{segment}", headers=headers)
        assert response.status_code == 404, response.text


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` on a real HTTP server (uvicorn, in a thread) on a free local port: a test
    client decodes a path twice, a server once, and a ``/`` in a name depends on it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_a_legacy_name_with_a_slash_is_addressed_encoded_twice(hostile: Api) -> None:
    suffix = tag()
    slashed, literal = f"a/b-{suffix}", f"p%2Fq-{suffix}"
    for name in (slashed, literal, f"p/q-{suffix}"):
        hostile.ops.gallery.create_subject(name, "signed consent, 2019")
    headers = hostile.headers(Role.enroller)

    def once(name: str) -> str:
        return quote(name, safe="")

    def twice(name: str) -> str:
        return quote(once(name), safe="")

    with served(hostile.app) as url, httpx.Client(base_url=url, headers=headers) as client:
        # encoded once, the server decodes %2F before routing: no route has two segments
        assert client.get(f"/v1/subjects/{once(slashed)}").status_code == 404
        found: Any = client.get(f"/v1/subjects/{twice(slashed)}")
        assert found.status_code == 200, found.text
        assert found.json()["name"] == slashed
        assert client.get(f"/v1/subjects/{twice(slashed)}/templates").json() == []
        erased = client.delete(f"/v1/subjects/{twice(slashed)}")
        assert erased.status_code == 200 and erased.json()["subject"] == slashed
        assert client.get(f"/v1/subjects/{twice(slashed)}").status_code == 404
        # a subject named by the segment as it arrives wins over the name it spells
        assert client.get(f"/v1/subjects/{twice(f'p/q-{suffix}')}").json()["name"] == literal
    assert slashed not in names(hostile)
