"""v6: ``template_log``, every change to a template in order, written by triggers.

Revision ID: v6
Revises: v5

A persisted vector index (``faceledger.gallery.indexed``) remembers the log position it
was saved at and catches up by reading the rows after it: an ``add`` for each inserted
template, a ``remove`` for each deleted one (a subject's erasure cascades to its
templates, which logs them), both for an update of a template's embedding or subject. Each
row carries a random ``nonce``, so a log row seen by an index is recognised as the same row
(a restored copy of the database reaches the same seq with other rows). The log holds
template ids only, never a vector or a name. ``meta.index_epoch`` names this
database's log, so an index saved for another database (or a restored copy) is not used.
``meta.schema_version`` becomes 5 (a faceledger from before Alembic refuses the gallery
rather than write templates without logging them).
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "v6"
down_revision: str | None = "v5"
branch_labels: str | None = None
depends_on: str | None = None

_LOG = "INSERT INTO template_log (template_id, op, nonce) VALUES "
_ADD = _LOG + "(NEW.id, 'add', lower(hex(randomblob(8))));"
_REMOVE = _LOG + "(OLD.id, 'remove', lower(hex(randomblob(8))));"
SQLITE_TRIGGERS = {
    "template_log_insert": f"AFTER INSERT ON templates BEGIN {_ADD} END",
    "template_log_delete": f"AFTER DELETE ON templates BEGIN {_REMOVE} END",
    "template_log_update": "AFTER UPDATE OF id, embedding, subject_id ON templates "
    f"BEGIN {_REMOVE} {_ADD} END",
}

POSTGRESQL_FUNCTION = """
CREATE FUNCTION faceledger_template_log() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    nonce text := substr(md5(random()::text || clock_timestamp()::text), 1, 16);
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO template_log (template_id, op, nonce) VALUES (OLD.id, 'remove', nonce);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO template_log (template_id, op, nonce) VALUES (NEW.id, 'add', nonce);
    END IF;
    RETURN NULL;
END
$$
"""
POSTGRESQL_TRIGGERS = {
    "template_log_insert": "AFTER INSERT ON templates",
    "template_log_delete": "AFTER DELETE ON templates",
    "template_log_update": "AFTER UPDATE OF id, embedding, subject_id ON templates",
}


def upgrade() -> None:
    op.create_table(
        "template_log",
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("template_id", sa.Integer, nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("nonce", sa.String(16), nullable=False),
        sqlite_autoincrement=True,
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name, body in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")
    elif dialect == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        for name, when in POSTGRESQL_TRIGGERS.items():
            op.execute(
                f"CREATE TRIGGER {name} {when} "
                "FOR EACH ROW EXECUTE FUNCTION faceledger_template_log()"
            )
    else:
        raise NotImplementedError(f"no template log triggers on {dialect}")
    meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    op.execute(meta.insert().values(key="index_epoch", value=uuid.uuid4().hex))


def downgrade() -> None:
    raise NotImplementedError("faceledger's schema is not downgraded; restore a backup instead")
