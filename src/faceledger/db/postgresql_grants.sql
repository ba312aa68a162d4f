-- faceledger on PostgreSQL: the application's role may append to the ledger, never change it.
--
-- Run once as the database's owner (the role that created the schema: open the database
-- with faceledger once as that role, e.g. `faceledger gallery info --db postgresql://owner@...`),
-- and again after an upgrade that adds tables. Replace faceledger_app with your role:
--
--     psql "postgresql://owner@host/faceledger" -v app=faceledger_app -f postgresql_grants.sql
--
-- The application then connects as that role. Besides these grants, triggers refuse UPDATE,
-- DELETE and TRUNCATE on the ledger for everyone (only the table's owner could disable them),
-- and every entry is hash-chained, so an edit made past both still shows in `audit verify`.

GRANT USAGE ON SCHEMA public TO :"app";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app";

-- The ledger: read and append only.
REVOKE UPDATE, DELETE, TRUNCATE ON ledger FROM :"app";
-- The schema's revision is the owner's to change (upgrades run as the owner).
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM :"app";
