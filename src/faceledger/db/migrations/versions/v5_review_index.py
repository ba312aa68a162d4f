"""v5: ``ix_events_review`` on every gallery.

Revision ID: v5
Revises: v4

The v4 code from dc86966 until 1a6a121 upgraded v3 galleries without creating the index
on ``events.review`` (galleries it created from scratch got it); such a gallery says
schema version 4 and is stamped ``v4``, so the v4 script never adds it. No table changes:
``meta.schema_version`` stays 4, and a faceledger from before Alembic still opens it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v5"
down_revision: str | None = "v4"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    indexes = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("events")}
    if "ix_events_review" not in indexes:
        op.create_index("ix_events_review", "events", ["review"])


def downgrade() -> None:
    raise NotImplementedError("faceledger's schema is not downgraded; restore a backup instead")
