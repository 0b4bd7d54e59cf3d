from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0005_report_run')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='ApprovalRequest',
            name='ticket',
            field=fields.ForeignKeyField('complaintbot.Ticket', source_field='ticket_id', db_index=True, db_constraint=True, to_field='id', related_name='approvals', on_delete=OnDelete.RESTRICT),
        ),
        ops.AlterField(
            model_name='Notification',
            name='ticket',
            field=fields.ForeignKeyField('complaintbot.Ticket', source_field='ticket_id', null=True, db_index=True, db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.RESTRICT),
        ),
        ops.AlterField(
            model_name='SentCard',
            name='ticket',
            field=fields.ForeignKeyField('complaintbot.Ticket', source_field='ticket_id', db_index=True, db_constraint=True, to_field='id', related_name='sent_cards', on_delete=OnDelete.RESTRICT),
        ),
        ops.AlterField(
            model_name='TicketEvent',
            name='ticket',
            field=fields.ForeignKeyField('complaintbot.Ticket', source_field='ticket_id', db_index=True, db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.RESTRICT),
        ),
    ]
