"""v2: ``events`` (one row per decided face track) and the webhook ``outbox`` (0760daf).

Revision ID: v2
Revises: v1
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v2"
down_revision: str | None = "v1"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # events.review and events.reviews_needed came with v4 (see v4_service)
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("camera", sa.String(200), nullable=True),
        sa.Column("track_id", sa.Integer, nullable=False),
        sa.Column("first_t", sa.Float, nullable=False),
        sa.Column("last_t", sa.Float, nullable=False),
        sa.Column("started_at", sa.String(40), nullable=True),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column(
            "subject_id",
            sa.Integer,
            sa.ForeignKey("subjects.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("threshold_fmr", sa.Float, nullable=False),
        sa.Column("model_id", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("best_crop_png", sa.LargeBinary, nullable=True),
        sa.Column("expires_at", sa.String(40), nullable=True),
        sqlite_autoincrement=True,  # ids are handed out (webhooks): never reuse one
    )
    op.create_index("ix_events_subject_id", "events", ["subject_id"])
    op.create_index("ix_events_expires_at", "events", ["expires_at"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.Integer, nullable=True),
        sa.Column("sink", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.String(40), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sqlite_autoincrement=True,  # a row id is the delivery's Idempotency-Key
    )
    op.create_index("ix_outbox_sink", "outbox", ["sink"])


def downgrade() -> None:
    raise NotImplementedError("faceledger's schema is not downgraded; restore a backup instead")
