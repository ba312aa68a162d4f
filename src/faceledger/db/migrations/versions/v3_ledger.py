"""v3: the append-only, hash-chained audit ``ledger`` and its guards (ab43f64).

Revision ID: v3
Revises: v2

The hash chain detects tampering; the guards make it deliberate. SQLite: the two
triggers faceledger has made since v3 (``BEFORE UPDATE`` / ``BEFORE DELETE``, named
``ledger_no_update`` / ``ledger_no_delete``), word for word, so galleries from before
Alembic already have exactly these. PostgreSQL: the same two row triggers, plus
``ledger_no_truncate`` (``TRUNCATE`` fires no row trigger), all calling one plpgsql
function. A superuser or the table's owner can still drop them: they guard against
mistakes and casual edits, the chain against the rest.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v3"
down_revision: str | None = "v2"
branch_labels: str | None = None
depends_on: str | None = None

MESSAGE = "the ledger is append-only"

POSTGRESQL_FUNCTION = f"""
CREATE FUNCTION faceledger_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE}';
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "ledger",
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("purpose", sa.Text, nullable=True),
        sa.Column("case_ref", sa.Text, nullable=True),
        sa.Column("inputs", sa.Text, nullable=False),  # JSON list of sha256 hex
        sa.Column("result", sa.Text, nullable=False),  # JSON
        sa.Column("gallery", sa.Text, nullable=False),
        sa.Column("model", sa.String(100), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sqlite_autoincrement=True,  # a seq is never reused, even after a deletion
    )
    op.create_index("ix_ledger_action", "ledger", ["action"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_no_{verb.lower()} BEFORE {verb} ON ledger "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )
    elif dialect == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_no_{verb.lower()} BEFORE {verb} ON ledger "
                "FOR EACH ROW EXECUTE FUNCTION faceledger_ledger_append_only()"
            )
        op.execute(
            "CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger "
            "FOR EACH STATEMENT EXECUTE FUNCTION faceledger_ledger_append_only()"
        )
    else:
        raise NotImplementedError(f"no append-only guards for the ledger on {dialect}")


def downgrade() -> None:
    raise NotImplementedError("faceledger's schema is not downgraded; restore a backup instead")
