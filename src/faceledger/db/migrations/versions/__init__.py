"""The revision scripts (``v1`` .. ``v4``); Alembic loads them by file, not by import."""
