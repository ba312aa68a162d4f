"""Alembic migrations of faceledger's database: frozen history, one script per step.

``versions/`` holds one script per schema version, revision ids ``v1`` .. ``v4``. Each
spells out what that version of faceledger created (table, index and trigger names
included) and never imports :mod:`faceledger.db.schema`, which describes only the head.
They are run by :func:`faceledger.db.migrate.upgrade` inside the caller's transaction;
there is no ``alembic.ini`` and no ``env.py`` (the ``alembic`` command line is not used).

Galleries made before Alembic (``meta.schema_version`` 1..4 and no ``alembic_version``
table) are stamped with their version's revision first, so each script only ever runs on
a database that is exactly at the revision before it, or, where noted in the script, on
one that an older faceledger left in a known variant of it.
"""
