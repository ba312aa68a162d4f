"""v7: ``templates.quality_score``, the face quality score (0-1) a template was enrolled at.

Revision ID: v7
Revises: v6

The score is the one every decision is gated by (:mod:`faceledger.faces.quality`: the
weakest of the declared factors). Templates enrolled before v7 have none (NULL): their
photos are not kept, so it cannot be measured again. ``templates.quality`` keeps what it
always held, the sharpness of the aligned crop (variance of the Laplacian).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v7"
down_revision: str | None = "v6"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # a plain ADD COLUMN on both dialects (a batch copy would drop v6's triggers on SQLite)
    op.add_column("templates", sa.Column("quality_score", sa.Float, nullable=True))


def downgrade() -> None:
    raise NotImplementedError("faceledger's schema is not downgraded; restore a backup instead")
