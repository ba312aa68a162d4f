"""v1: the gallery: ``meta``, ``subjects`` and ``templates`` (faceledger 201a530).

Revision ID: v1
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v1"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

APP_ID = "faceledger-gallery"
"""What ``meta.app`` holds in every faceledger database."""


def upgrade() -> None:
    # faceledger before Alembic made ``meta`` (with the ``app`` row) before its first
    # migration ran, so a gallery at schema version 0 may have it already.
    if not sa.inspect(op.get_bind()).has_table("meta"):
        meta = op.create_table(
            "meta",
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        )
        op.bulk_insert(meta, [{"key": "app", "value": APP_ID}])
    op.create_table(
        "subjects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("legal_basis", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "templates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "subject_id",
            sa.Integer,
            sa.ForeignKey("subjects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("model_id", sa.String(100), nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("legal_basis", sa.Text, nullable=False),
        sa.Column("source_name", sa.Text, nullable=False),
        sa.Column("source_sha256", sa.String(64), nullable=False),
        sa.Column("quality", sa.Float, nullable=False),
        sa.Column("det_score", sa.Float, nullable=False),
        sa.Column("crop_png", sa.LargeBinary, nullable=False),
        sa.Column("crop_geometry", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_templates_model_id", "templates", ["model_id"])


def downgrade() -> None:
    raise NotImplementedError("faceledger's schema is not downgraded; restore a backup instead")
