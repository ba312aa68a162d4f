"""Who may do what: roles, their permissions, and API keys (schema v4).

A key is shown once, at creation: ``fl_<id>_<secret>``. Only its sha256 is stored (the
secret has 256 bits of entropy, so a fast hash is enough: there is nothing to guess), with
its public ``id`` for listing and revoking. Roles follow least privilege::

    admin      keys, watch lists, retention runs
    enroller   subjects and their templates (and reads the watch lists to use them)
    operator   identify, verify, detect; reads events
    reviewer   reads events and confirms or rejects them
    auditor    reads, exports and verifies the audit ledger; nothing else

Every role may call ``/healthz`` and ``/metrics``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faceledger.db import Store, engine_with_schema
from faceledger.db.engine import write_txn
from faceledger.db.schema import api_keys
from faceledger.errors import ConfigError, ConflictError, NotFoundError
from faceledger.gallery.store import now
from faceledger.gallery.watchlists import SERVICE_SCHEMA

TOKEN_PREFIX = "fl_"


class Role(str, enum.Enum):
    admin = "admin"
    enroller = "enroller"
    operator = "operator"
    reviewer = "reviewer"
    auditor = "auditor"


class Permission(str, enum.Enum):
    health = "health"
    keys = "keys"
    watchlists_read = "watchlists.read"
    watchlists_write = "watchlists.write"
    retention = "retention"
    subjects_read = "subjects.read"
    subjects_write = "subjects.write"
    search = "search"
    events_read = "events.read"
    events_review = "events.review"
    audit_read = "audit.read"


_P = Permission
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.admin: frozenset(
        {_P.health, _P.keys, _P.watchlists_read, _P.watchlists_write, _P.retention}
    ),
    Role.enroller: frozenset({_P.health, _P.subjects_read, _P.subjects_write, _P.watchlists_read}),
    Role.operator: frozenset({_P.health, _P.search, _P.events_read}),
    Role.reviewer: frozenset({_P.health, _P.events_read, _P.events_review}),
    Role.auditor: frozenset({_P.health, _P.audit_read}),
}


def allowed(role: Role, permission: Permission) -> bool:
    return permission in PERMISSIONS[role]


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise ConfigError(f"unknown role {text!r}; choose one of: {names}") from None


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: Role
    created_at: str
    created_by: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "revoked_at": self.revoked_at,
        }


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


_COLUMNS = (
    api_keys.c.prefix,
    api_keys.c.name,
    api_keys.c.role,
    api_keys.c.created_at,
    api_keys.c.created_by,
    api_keys.c.revoked_at,
)


def _key(row: Any) -> ApiKey:
    prefix, name, role, created_at, created_by, revoked_at = row
    return ApiKey(prefix, name, Role(role), created_at, created_by, revoked_at)


KeyHook = Callable[[Connection, ApiKey], None]


class KeyStore:
    """The API keys of one gallery; pass a :class:`Gallery` or its engine."""

    def __init__(self, store: Store) -> None:
        self.engine = engine_with_schema(store, SERVICE_SCHEMA, "API keys")

    def create(
        self, name: str, role: Role, created_by: str, within: KeyHook | None = None
    ) -> tuple[str, ApiKey]:
        """A new key: (the token, shown only now; its record)."""
        name = name.strip()
        if not name:
            raise ConfigError("a key needs the name of the person or system holding it")
        key_id = secrets.token_hex(4)
        token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        key = ApiKey(key_id, name, role, now(), created_by, None)
        with write_txn(self.engine) as conn:
            conn.execute(
                api_keys.insert().values(
                    name=name,
                    role=role.value,
                    prefix=key_id,
                    secret_sha256=_digest(token),
                    created_at=key.created_at,
                    created_by=created_by,
                )
            )
            if within is not None:
                within(conn, key)
        return token, key

    def revoke(self, key_id: str, within: KeyHook | None = None) -> ApiKey:
        with write_txn(self.engine) as conn:
            row = conn.execute(sa.select(*_COLUMNS).where(api_keys.c.prefix == key_id)).first()
            if row is None:
                raise NotFoundError(f"no API key with id {key_id!r} (see: faceledger keys list)")
            key = _key(row)
            if not key.active:
                raise ConflictError(f"API key {key_id} was revoked already, at {key.revoked_at}")
            stamp = now()
            conn.execute(
                api_keys.update().where(api_keys.c.prefix == key_id).values(revoked_at=stamp)
            )
            revoked = ApiKey(key.id, key.name, key.role, key.created_at, key.created_by, stamp)
            if within is not None:
                within(conn, revoked)
        return revoked

    def all(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            return [_key(r) for r in conn.execute(sa.select(*_COLUMNS).order_by(api_keys.c.id))]

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key behind ``token``, or None (unknown, malformed or revoked)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = _digest(token)
        query = sa.select(*_COLUMNS, api_keys.c.secret_sha256).where(
            api_keys.c.secret_sha256 == digest
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None or not hmac.compare_digest(row.secret_sha256, digest):
            return None
        key = _key(row[:-1])
        return key if key.active else None
