from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0011_heartbeat')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Ticket',
            name='related_to',
            field=fields.IntField(null=True, db_index=True),
        ),
        # AddField declares the index but creates none on SQLite.
        ops.RunSQL('CREATE INDEX IF NOT EXISTS "idx_ticket_related_d6deb7" ON "ticket" ("related_to")'),
    ]
