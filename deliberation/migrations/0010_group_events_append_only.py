"""The group event log is evidence: PROTECT instead of CASCADE / SET NULL (deleting a group or a participant
with events is refused by the ORM), and on PostgreSQL a trigger that refuses UPDATE and DELETE of any event row,
whoever sends it (the ORM, a bulk ``update()``, psql). TRUNCATE fires no row trigger, so ``manage.py flush`` and
the test database's flush still work. SQLite (the demo) gets no trigger: there the models' guards hold."""

import django.db.models.deletion
from django.db import migrations, models

FUNCTION = "deliberation_groupevent_append_only"

CREATE = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'deliberation_groupevent is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS {FUNCTION} ON deliberation_groupevent;
CREATE TRIGGER {FUNCTION} BEFORE UPDATE OR DELETE ON deliberation_groupevent
    FOR EACH ROW EXECUTE FUNCTION {FUNCTION}();
"""

DROP = f"""
DROP TRIGGER IF EXISTS {FUNCTION} ON deliberation_groupevent;
DROP FUNCTION IF EXISTS {FUNCTION}();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):

    dependencies = [
        ('deliberation', '0009_generator_models'),
        ('participants', '0003_is_simulated'),
    ]

    operations = [
        migrations.AlterField(
            model_name='groupevent',
            name='group',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='events',
                                    to='deliberation.group'),
        ),
        migrations.AlterField(
            model_name='groupevent',
            name='participant',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                    to='participants.participant'),
        ),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
