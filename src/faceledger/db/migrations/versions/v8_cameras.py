"""v8: cameras as records, each with a purpose, a legal basis and its watch lists.

Revision ID: v8
Revises: v7

``cameras`` holds what a camera node needs to run a camera (its address, with
credentials, which are never shown), why it runs (purpose, legal basis) and what its node
last reported (``health``, ``health_at``, ``node``). ``camera_watchlists`` names the watch
lists a camera may match against (purpose limitation: nobody else is named there).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v8"
down_revision: str | None = "v7"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "cameras",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("detect_url", sa.Text, nullable=True),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("legal_basis", sa.Text, nullable=False),
        sa.Column("detect_fps", sa.Float, nullable=False),
        sa.Column("min_face", sa.Integer, nullable=True),
        sa.Column("timeout", sa.Float, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.Column("health", sa.Text, nullable=True),
        sa.Column("health_at", sa.String(40), nullable=True),
        sa.Column("node", sa.String(200), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "camera_watchlists",
        sa.Column(
            "camera_id",
            sa.Integer,
            sa.ForeignKey("cameras.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "watchlist_id",
            sa.Integer,
            sa.ForeignKey("watchlists.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )


def downgrade() -> None:
    raise NotImplementedError("faceledger's schema is not downgraded; restore a backup instead")
