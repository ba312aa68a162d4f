"""The database below every store: schema, migrations, engines and dialect differences.

``Database(target)`` opens a SQLite file or a PostgreSQL database (``--db``), checks it is
faceledger's and upgrades its schema with Alembic. Stores (gallery, events, ledger, keys)
take a ``Database``; nothing above them opens a connection.
"""

from faceledger.db.database import Database, Store, database_of, engine_with_schema
from faceledger.db.engine import lock_ledger, top_seq, write_txn
from faceledger.db.url import DatabaseUrl, parse_db

__all__ = [
    "Database",
    "DatabaseUrl",
    "Store",
    "database_of",
    "engine_with_schema",
    "lock_ledger",
    "parse_db",
    "top_seq",
    "write_txn",
]
