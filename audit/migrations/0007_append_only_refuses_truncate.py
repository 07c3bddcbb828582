"""On PostgreSQL, refuse TRUNCATE of audit events too, and let UPDATE fill an empty seal only.

TRUNCATE fires no row trigger, so before this a truncate and a re-inserted,
rewritten chain passed the append-only trigger. A statement-level trigger now
refuses it, unless the session set ``egress.audit_maintenance = 'on'``: the test
suite does (pytest-django empties tables between transactional tests with
TRUNCATE). The switch is no security boundary: whoever can set it can as well
drop the trigger. The boundary is the role split in deploy/postgres-roles.sql
(the runtime role has neither TRUNCATE nor UPDATE nor DELETE on the table).

The row trigger lets exactly one UPDATE through: one that fills an empty seal
(and its key id) and changes nothing else, which is what ``manage.py seal_audit``
does for events written before seals existed.
"""

from typing import Any

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.seal = '' AND NEW.seal <> ''
           AND to_jsonb(OLD) - 'seal' - 'seal_key_id' = to_jsonb(NEW) - 'seal' - 'seal_key_id' THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION audit_event_no_truncate() RETURNS trigger AS $$
BEGIN
    IF current_setting('egress.audit_maintenance', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: TRUNCATE refused'
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent;
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_no_truncate();
"""

DROP = """
DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_no_truncate();
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_event_and_head_seals")]
    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
