"""v4: the service: API keys, watch lists, human review of events (dc86966, 1a6a121).

Revision ID: v4
Revises: v3

``events.review`` / ``events.reviews_needed``: galleries that an older faceledger made at
v2 or v3 have neither, but one that the v4 code created from scratch got both (and
``ix_events_review``) with the events table, in its v2 step. That gallery is stamped v4
and never runs this script; the columns are still checked for first, as the old code did.
``ix_events_review``: the old code made it with the table, and on upgraded galleries only
from 1a6a121 on; created here when it is missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v4"
down_revision: str | None = "v3"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("prefix", sa.String(20), nullable=False, unique=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("revoked_at", sa.String(40), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "watchlists",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("review", sa.Boolean, nullable=False),
        sa.Column("two_person", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "watchlist_members",
        sa.Column(
            "watchlist_id",
            sa.Integer,
            sa.ForeignKey("watchlists.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "subject_id",
            sa.Integer,
            sa.ForeignKey("subjects.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "event_id",
            sa.Integer,
            sa.ForeignKey("events.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("reviewer", sa.Text, nullable=False),
        sa.Column("decision", sa.String(10), nullable=False),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("at", sa.String(40), nullable=False),
    )
    op.create_index("ix_reviews_event_id", "reviews", ["event_id"])

    inspector = sa.inspect(op.get_bind())
    have = {c["name"] for c in inspector.get_columns("events")}
    # review: NULL (none asked), pending, confirmed or rejected
    if "review" not in have:
        op.add_column("events", sa.Column("review", sa.String(20), nullable=True))
    # reviews_needed: distinct confirmations required (2 on a two-person watch list)
    if "reviews_needed" not in have:
        op.add_column(
            "events",
            sa.Column("reviews_needed", sa.Integer, nullable=False, server_default="0"),
        )
    if "ix_events_review" not in {i["name"] for i in inspector.get_indexes("events")}:
        op.create_index("ix_events_review", "events", ["review"])


def downgrade() -> None:
    raise NotImplementedError("faceledger's schema is not downgraded; restore a backup instead")
