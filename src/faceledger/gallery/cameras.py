"""Cameras as records (schema v8): where a camera streams from, why it runs, and whom it
may recognise.

A camera has a purpose and a legal basis (it cannot be added without both) and the watch
lists it matches against: at that camera an enrolled person on none of them is
``unknown`` (purpose limitation). Its address may carry credentials
(``rtsp://user:pass@host/x``): they are kept to connect, and never shown: every view of
a camera (:meth:`Camera.as_json`, ``repr``, the ledger) masks them. ``health`` is what the
node running the camera last reported, with its time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faceledger.db import Store, engine_with_schema
from faceledger.db.engine import write_txn
from faceledger.db.migrate import SCHEMA_VERSION
from faceledger.db.schema import camera_watchlists, cameras, watchlist_members, watchlists
from faceledger.errors import ConfigError, ConflictError, NotFoundError
from faceledger.gallery.store import now
from faceledger.text import free_text, quoted

Transport = Literal["tcp", "udp", "auto"]
TRANSPORTS: tuple[str, ...] = ("tcp", "udp", "auto")
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://", "rtmp://")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TEXT_MAX = 500


def masked(url: str | None) -> str | None:
    """A stream address as it may be shown: ``rtsp://user:pass@host/x`` becomes
    ``rtsp://***@host/x`` (host and path still say which camera it is). Everything from the
    scheme to the *last* ``@`` is hidden, so a password holding ``/``, ``@`` or spaces is
    hidden too (an ``@`` in a path hides more than needed, never less)."""
    if url is None or "@" not in url:
        return url
    head, sep, rest = url.partition("://")
    tail = (rest if sep else url).rsplit("@", 1)[1]
    return f"{head}://***@{tail}" if sep else f"***@{tail}"


def camera_name(text: str) -> str:
    """A camera's name: 1-64 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit (it
    names MQTT topics, NATS keys and URLs as it is)."""
    name = text.strip()
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"camera name {quoted(name)}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. door-1)"
        )
    return name


def stream_url(url: str, what: str = "camera address") -> str:
    """A live stream's address: rtsp://, http(s)://, udp://, tcp://, rtmp:// or /dev/videoN."""
    url = url.strip()
    if not (url.startswith(STREAM_PREFIXES) or re.fullmatch(r"/dev/video[0-9]+", url)):
        raise ConfigError(
            f"{what} {quoted(masked(url) or '')}: give a stream address (rtsp://, http(s)://, "
            "udp://, tcp://, rtmp://) or a device (/dev/video0)"
        )
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ConfigError(f"{what} {quoted(masked(url) or '')}: holds spaces or control characters")
    return url


@dataclass(frozen=True)
class CameraSettings:
    """What a camera is added with (checked on construction)."""

    name: str
    url: str = field(repr=False)
    purpose: str
    legal_basis: str
    watchlists: tuple[str, ...]
    detect_fps: float = 5.0
    min_face: int | None = None
    detect_url: str | None = field(default=None, repr=False)
    transport: str = "tcp"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "name", camera_name(self.name))
        check_credentials(self.url)
        check_credentials(self.detect_url, "detection sub-stream")
        set_(self, "url", stream_url(self.url))
        if self.detect_url is not None:
            set_(self, "detect_url", stream_url(self.detect_url, "detection sub-stream"))
        purpose = free_text(self.purpose, "a camera's purpose", TEXT_MAX, required=True)
        basis = free_text(self.legal_basis, "a camera's legal basis", TEXT_MAX, required=True)
        set_(self, "purpose", purpose)
        set_(self, "legal_basis", basis)
        lists = tuple(dict.fromkeys(w.strip() for w in self.watchlists if w.strip()))
        if not lists:
            raise ConfigError(
                f"camera {self.name}: name the watch lists it may match against "
                "(--watchlists staff,banned); nobody else is recognised there"
            )
        set_(self, "watchlists", lists)
        if not 0.1 <= self.detect_fps <= 60:
            raise ConfigError(f"camera {self.name}: detect fps {self.detect_fps} is not in 0.1-60")
        if self.min_face is not None and not 8 <= self.min_face <= 2000:
            raise ConfigError(f"camera {self.name}: min face {self.min_face} is not in 8-2000 px")
        if self.transport not in TRANSPORTS:
            raise ConfigError(
                f"camera {self.name}: transport {self.transport!r}; one of {', '.join(TRANSPORTS)}"
            )
        if not 0.5 <= self.timeout <= 300:
            raise ConfigError(f"camera {self.name}: timeout {self.timeout} s is not in 0.5-300")


@dataclass(frozen=True)
class Camera:
    """One camera record (``url`` holds the credentials: show :attr:`shown_url` instead)."""

    name: str
    url: str = field(repr=False)
    purpose: str
    legal_basis: str
    watchlists: tuple[str, ...]
    detect_fps: float
    min_face: int | None
    detect_url: str | None = field(repr=False)
    transport: str
    timeout: float
    paused: bool
    created_at: str
    updated_at: str
    health: dict[str, Any] | None = None
    health_at: str | None = None
    node: str | None = None

    @property
    def shown_url(self) -> str:
        return masked(self.url) or ""

    def as_json(self) -> dict[str, Any]:
        """The record as lists, API answers and the ledger show it (credentials masked)."""
        return {
            "name": self.name,
            "url": self.shown_url,
            "detect_url": masked(self.detect_url),
            "transport": self.transport,
            "purpose": self.purpose,
            "legal_basis": self.legal_basis,
            "watchlists": list(self.watchlists),
            "detect_fps": self.detect_fps,
            "min_face": self.min_face,
            "timeout": self.timeout,
            "paused": self.paused,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "node": self.node,
            # what a node reports (a stream error) may quote the address it failed to open
            "health": None if self.health is None else _scrub(self.health, _secrets(self)),
            "health_at": self.health_at,
        }

    def ledger_view(self) -> dict[str, Any]:
        """What a camera change records: the settings, without health."""
        view = self.as_json()
        for key in ("health", "health_at", "node"):
            view.pop(key)
        return view


Within = Callable[[Connection, Camera], None]


class CameraStore:
    """The cameras of one gallery."""

    def __init__(self, store: Store) -> None:
        # cameras came with Alembic revision v8; a database opened here is at the head
        self.engine = engine_with_schema(store, SCHEMA_VERSION, "cameras")

    def add(self, settings: CameraSettings, within: Within | None = None) -> Camera:
        s = settings
        with write_txn(self.engine) as conn:
            taken = conn.execute(sa.select(cameras.c.id).where(cameras.c.name == s.name))
            if taken.first() is not None:
                raise ConflictError(f"a camera named {s.name!r} exists already")
            list_ids = _watchlist_ids(conn, s.watchlists)
            stamp = now()
            camera_id = conn.execute(
                cameras.insert().values(
                    name=s.name,
                    url=s.url,
                    detect_url=s.detect_url,
                    transport=s.transport,
                    purpose=s.purpose,
                    legal_basis=s.legal_basis,
                    detect_fps=s.detect_fps,
                    min_face=s.min_face,
                    timeout=s.timeout,
                    paused=False,
                    created_at=stamp,
                    updated_at=stamp,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            for wid in list_ids:
                conn.execute(
                    camera_watchlists.insert().values(camera_id=camera_id, watchlist_id=wid)
                )
            made = _one(conn, s.name)
            if within is not None:
                within(conn, made)
        return made

    def get(self, name: str) -> Camera:
        with self.engine.connect() as conn:
            return _one(conn, name)

    def all(self) -> list[Camera]:
        with self.engine.connect() as conn:
            names = conn.execute(sa.select(cameras.c.name).order_by(cameras.c.name)).scalars()
            return [_one(conn, name) for name in list(names)]

    def set_paused(self, name: str, paused: bool, within: Within | None = None) -> Camera:
        with write_txn(self.engine) as conn:
            _one(conn, name)
            conn.execute(
                cameras.update()
                .where(cameras.c.name == name)
                .values(paused=paused, updated_at=now())
            )
            changed = _one(conn, name)
            if within is not None:
                within(conn, changed)
        return changed

    def remove(self, name: str, within: Within | None = None) -> Camera:
        with write_txn(self.engine) as conn:
            gone = _one(conn, name)
            camera_id = conn.execute(sa.select(cameras.c.id).where(cameras.c.name == name)).scalar()
            conn.execute(
                camera_watchlists.delete().where(camera_watchlists.c.camera_id == camera_id)
            )
            conn.execute(cameras.delete().where(cameras.c.id == camera_id))
            if within is not None:
                within(conn, gone)
        return gone

    def report_health(self, name: str, node: str, health: dict[str, Any], at: str) -> bool:
        """Store what ``node`` reports of camera ``name``; False when it was removed."""
        with write_txn(self.engine) as conn:
            done = conn.execute(
                cameras.update()
                .where(cameras.c.name == name)
                .values(health=json.dumps(health, sort_keys=True), health_at=at, node=node)
            )
            return bool(done.rowcount)

    def allowed_subjects(self, name: str) -> frozenset[int]:
        """The subject ids on the camera's watch lists, as the database holds them now."""
        query = (
            sa.select(watchlist_members.c.subject_id)
            .select_from(
                cameras.join(camera_watchlists).join(
                    watchlist_members,
                    watchlist_members.c.watchlist_id == camera_watchlists.c.watchlist_id,
                )
            )
            .where(cameras.c.name == name)
        )
        with self.engine.connect() as conn:
            return frozenset(int(i) for i in conn.execute(query).scalars())


def _watchlist_ids(conn: Connection, names: Sequence[str]) -> list[int]:
    found = dict(
        conn.execute(
            sa.select(watchlists.c.name, watchlists.c.id).where(watchlists.c.name.in_(names))
        ).all()
    )
    missing = [n for n in names if n not in found]
    if missing:
        raise NotFoundError(
            f"no watch list named {', '.join(map(repr, missing))}; create it first "
            "(faceledger watchlists create NAME)"
        )
    return [int(found[n]) for n in names]


def _one(conn: Connection, name: str) -> Camera:
    row = conn.execute(sa.select(cameras).where(cameras.c.name == name)).mappings().first()
    if row is None:
        raise NotFoundError(f"no camera named {name!r}")
    lists = conn.execute(
        sa.select(watchlists.c.name)
        .join(camera_watchlists, camera_watchlists.c.watchlist_id == watchlists.c.id)
        .where(camera_watchlists.c.camera_id == row["id"])
        .order_by(watchlists.c.name)
    ).scalars()
    health = json.loads(row["health"]) if row["health"] else None
    return Camera(
        name=row["name"], url=row["url"], purpose=row["purpose"],
        legal_basis=row["legal_basis"], watchlists=tuple(lists),
        detect_fps=float(row["detect_fps"]), min_face=row["min_face"],
        detect_url=row["detect_url"], transport=row["transport"],
        timeout=float(row["timeout"]), paused=bool(row["paused"]),
        created_at=row["created_at"], updated_at=row["updated_at"], health=health,
        health_at=row["health_at"], node=row["node"],
    )  # fmt: skip


# ---- credentials: never shown ------------------------------------------------------------

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_SHORTEST_SECRET = 4
"""A bare password shorter than this is not searched for in free text (it would blot out
ordinary words); the whole ``user:password`` still is."""


def check_credentials(url: str | None, what: str = "camera address") -> None:
    """Refuse an address whose credentials could not be masked reliably, without showing
    it: an ``@`` the mask cannot place (one in the password, or an address that is not
    ``scheme://user:password@host/...``), or a ``/`` or a space in the user name or
    password. Percent-encoding them (``%40``, ``%2F``, ``%20``) makes the address usable."""
    if url is None:
        return
    text = url.strip()
    if "@" not in text:
        return
    scheme = _SCHEME.match(text)
    if scheme is not None:
        rest = (masked(text) or "")[scheme.end() :]
        userinfo = text[scheme.end() :].rsplit("@", 1)[0]
        if rest.startswith("***@") and "@" not in rest[4:] and "/" not in userinfo:
            return
    raise ConfigError(
        f"{what}: its credentials cannot be told apart from the rest of the address (an "
        "'@', '/' or space in the user name or password, or an '@' elsewhere); write it as "
        "scheme://user:password@host/path with those characters percent-encoded in the user "
        "name and password (@ as %40, / as %2F, a space as %20). The address is not shown, "
        "since it may hold a password"
    )


def _secrets(camera: Camera) -> list[str]:
    """What of the camera's addresses must never be shown: each address as stored, its
    ``user:password`` and its password (as written and percent-decoded)."""
    found: list[str] = []
    for url in (camera.url, camera.detect_url):
        if not url or "@" not in url:
            continue
        _, sep, rest = url.partition("://")
        userinfo = (rest if sep else url).rsplit("@", 1)[0]
        password = userinfo.partition(":")[2]
        found += [url, userinfo, unquote(userinfo)]
        found += [p for p in (password, unquote(password)) if len(p) >= _SHORTEST_SECRET]
    return sorted({s for s in found if s}, key=len, reverse=True)


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        value = masked(value) or ""
        for secret in secrets:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    return value
