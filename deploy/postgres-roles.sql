-- The PostgreSQL role split of Egress Portal (deploy/README.md, docs/audit.md).
--
--   egress_owner  owns the tables and runs `manage.py migrate` (and `seal_audit`).
--   egress_app    what the web processes and Celery workers log in as: it reads and
--                 writes the portal's tables, but on the audit log it may only add
--                 and read. Neither UPDATE nor DELETE nor TRUNCATE of an audit event
--                 is possible for it, whatever the trigger does; the chain head row
--                 it may update in its four chain columns only (every writer locks and
--                 moves it; a head it moves cannot hide events it cannot delete, and
--                 a head it seals wrongly fails verify_audit).
--
-- Run it as a superuser (or as egress_owner once the roles exist) after every
-- `migrate`: it is idempotent, and new tables get the plain grants by default.
-- Passwords are set apart from this file:  ALTER ROLE egress_app PASSWORD '...';
-- Other role names: replace egress_owner and egress_app throughout.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'egress_owner') THEN
        CREATE ROLE egress_owner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'egress_app') THEN
        CREATE ROLE egress_app LOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO egress_app;

-- Everything but the audit log: what a Django application needs.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO egress_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO egress_app;
ALTER DEFAULT PRIVILEGES FOR ROLE egress_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO egress_app;
ALTER DEFAULT PRIVILEGES FOR ROLE egress_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO egress_app;

-- The audit log: append and read only.
REVOKE ALL ON audit_auditevent, audit_auditcheckpoint, audit_auditchainhead FROM egress_app;
GRANT SELECT, INSERT ON audit_auditevent, audit_auditcheckpoint TO egress_app;
-- The head: read, create the one row on an empty chain, move it (SELECT ... FOR UPDATE needs UPDATE too).
GRANT SELECT, INSERT ON audit_auditchainhead TO egress_app;
GRANT UPDATE (last_seq, last_hash, seal, seal_key_id) ON audit_auditchainhead TO egress_app;
