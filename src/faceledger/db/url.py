"""Which database a ``--db`` value names: a SQLite file or a PostgreSQL server.

Accepted forms (anything else is a ConfigError that lists them)::

    gallery.db  /var/lib/faceledger/gallery.db      a SQLite file (made when first written)
    sqlite:///relative.db  sqlite:////abs/path.db   the same, as a URL
    postgresql://user[:password]@host[:port]/name   a PostgreSQL database (psycopg 3)
    postgres://...  postgresql+psycopg://...        the same

A password in a URL is never shown: :attr:`DatabaseUrl.shown` masks it, and messages,
logs and ledger entries use that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import sqlalchemy as sa

from faceledger.errors import ConfigError

Dialect = Literal["sqlite", "postgresql"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_POSTGRES = {"postgresql", "postgres", "postgresql+psycopg"}
FORMS = "a file path, sqlite:///PATH, or postgresql://user@host:port/name"


@dataclass(frozen=True)
class DatabaseUrl:
    dialect: Dialect
    url: sa.URL
    """What SQLAlchemy connects with (``postgresql+psycopg`` for a server)."""
    path: Path | None
    """The SQLite file (None for a server)."""

    @property
    def shown(self) -> str:
        """For messages and records: the file's path, or the URL with its password masked."""
        if self.path is not None:
            return str(self.path)
        return self.url.set(drivername="postgresql").render_as_string(hide_password=True)


def parse_db(target: str | Path | DatabaseUrl) -> DatabaseUrl:
    """``--db`` text (or a path) -> the database it names; ConfigError if it names none."""
    if isinstance(target, DatabaseUrl):
        return target
    if isinstance(target, Path):
        return _sqlite(target)
    text = str(target).strip()
    if not text:
        raise ConfigError(f"empty database name; give {FORMS}")
    scheme = _SCHEME.match(text)
    if scheme is None:
        return _sqlite(Path(text).expanduser())
    kind = scheme.group(1).lower()
    if kind == "sqlite":
        rest = text[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"{text!r}: a SQLite URL is sqlite:///PATH (three slashes)")
        return _sqlite(Path(rest[1:]).expanduser())
    if kind in _POSTGRES:
        try:
            url = sa.make_url(text)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"{_mask(text)}: not a database URL ({exc})") from None
        if not url.database:
            raise ConfigError(
                f"{_mask(text)}: name the database, e.g. postgresql://user@host:5432/faceledger"
            )
        return DatabaseUrl("postgresql", url.set(drivername="postgresql+psycopg"), None)
    raise ConfigError(f"{_mask(text)}: faceledger cannot use {kind!r} databases; give {FORMS}")


def _sqlite(path: Path) -> DatabaseUrl:
    return DatabaseUrl("sqlite", sa.URL.create("sqlite", database=str(path)), path)


def _mask(text: str) -> str:
    """A URL with any password replaced, for messages about a URL that did not parse."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", text)
