"""The schema of every table faceledger keeps, in one place (SQLAlchemy Core).

This is the *head* schema: what a database looks like after every migration in
``faceledger.db.migrations`` has run. The migrations themselves spell out each step
(they never import this module), and a test holds the two together.

Only portable types are used, so one schema serves SQLite and PostgreSQL; what differs
between the two (locks, triggers, pragmas) lives in ``faceledger.db.dialect``.
"""

from __future__ import annotations

import sqlalchemy as sa

APP_ID = "faceledger-gallery"
metadata = sa.MetaData()

meta_table = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
subjects = sa.Table(
    "subjects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("legal_basis", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)
templates = sa.Table(
    "templates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "subject_id", sa.Integer, sa.ForeignKey("subjects.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("model_id", sa.String(100), nullable=False, index=True),
    sa.Column("embedding", sa.LargeBinary, nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("legal_basis", sa.Text, nullable=False),
    sa.Column("source_name", sa.Text, nullable=False),
    sa.Column("source_sha256", sa.String(64), nullable=False),
    sa.Column("quality", sa.Float, nullable=False),  # sharpness of the aligned crop
    sa.Column("det_score", sa.Float, nullable=False),
    sa.Column("crop_png", sa.LargeBinary, nullable=False),
    sa.Column("crop_geometry", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    # v7: the face quality score (0-1) at enrollment; NULL for templates from before v7
    sa.Column("quality_score", sa.Float, nullable=True),
)
# v2: what video scanning decided (one row per face track; see faceledger.events.store)
events = sa.Table(
    "events",
    metadata,
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
        index=True,
    ),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("threshold_fmr", sa.Float, nullable=False),
    sa.Column("model_id", sa.String(100), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("best_crop_png", sa.LargeBinary, nullable=True),
    sa.Column("expires_at", sa.String(40), nullable=True, index=True),
    # v4: human review. review: NULL (none asked), pending, confirmed or rejected;
    # reviews_needed: distinct confirmations required (2 on a two-person watch list)
    sa.Column("review", sa.String(20), nullable=True, index=True),
    sa.Column("reviews_needed", sa.Integer, nullable=False, server_default="0"),
    sqlite_autoincrement=True,  # ids are handed out (webhooks): never reuse one
)
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event_id", sa.Integer, nullable=True),
    sa.Column("sink", sa.Text, nullable=False, index=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.String(40), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sqlite_autoincrement=True,  # a row id is the delivery's Idempotency-Key
)
# v3: the append-only, hash-chained audit ledger (see faceledger.ledger)
ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("action", sa.String(100), nullable=False, index=True),
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


# v4: the service: API keys, watch lists (with their review rules) and human reviews
api_keys = sa.Table(
    "api_keys",
    metadata,
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
watchlists = sa.Table(
    "watchlists",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("review", sa.Boolean, nullable=False),
    sa.Column("two_person", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)
watchlist_members = sa.Table(
    "watchlist_members",
    metadata,
    sa.Column(
        "watchlist_id",
        sa.Integer,
        sa.ForeignKey("watchlists.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "subject_id", sa.Integer, sa.ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True
    ),
)
reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "event_id",
        sa.Integer,
        sa.ForeignKey("events.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("reviewer", sa.Text, nullable=False),
    sa.Column("decision", sa.String(10), nullable=False),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("at", sa.String(40), nullable=False),
)
# v6: every change to a template, in order, so a persisted vector index can catch up with
# the gallery by reading what changed since it was saved (written by triggers on
# ``templates``: a change made by any process, or by hand in SQL, is logged)
template_log = sa.Table(
    "template_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("template_id", sa.Integer, nullable=False),
    sa.Column("op", sa.String(8), nullable=False),  # 'add' or 'remove'
    sa.Column("nonce", sa.String(16), nullable=False),  # random: names this very row
    sqlite_autoincrement=True,  # a seq is never reused
)
# v8: cameras as records (faceledger.gallery.cameras): each with its purpose, legal basis
# and the watch lists it may match against; ``health`` is what its node last reported
cameras = sa.Table(
    "cameras",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("url", sa.Text, nullable=False),  # with its credentials: never shown
    sa.Column("detect_url", sa.Text, nullable=True),  # a detection sub-stream
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
camera_watchlists = sa.Table(
    "camera_watchlists",
    metadata,
    sa.Column(
        "camera_id", sa.Integer, sa.ForeignKey("cameras.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "watchlist_id",
        sa.Integer,
        sa.ForeignKey("watchlists.id", ondelete="CASCADE"),
        primary_key=True,
    ),
)
