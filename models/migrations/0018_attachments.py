from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0017_ticket_source')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Attachment',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('ticket', fields.ForeignKeyField('complaintbot.Ticket', source_field='ticket_id', db_index=True, db_constraint=True, to_field='id', related_name='attachments', on_delete=OnDelete.RESTRICT)),
                ('sha256', fields.CharField(db_index=True, max_length=64)),
                ('name', fields.CharField(max_length=255)),
                ('content_type', fields.CharField(max_length=128)),
                ('size', fields.IntField()),
                ('uploaded_by', fields.CharField(max_length=64)),
                ('uploaded_by_name', fields.CharField(default='', max_length=64)),
                ('source', fields.CharField(max_length=16)),
                ('uploaded_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'attachment', 'app': 'complaintbot', 'pk_attr': 'id', 'table_description': 'One file attached to one ticket. The same bytes on two tickets (or twice'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PendingAttachment',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('userid', fields.CharField(db_index=True, max_length=64)),
                ('chatid', fields.CharField(default='', max_length=128)),
                ('sha256', fields.CharField(max_length=64)),
                ('name', fields.CharField(max_length=255)),
                ('content_type', fields.CharField(max_length=128)),
                ('size', fields.IntField()),
                ('source', fields.CharField(max_length=16)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'pending_attachment', 'app': 'complaintbot', 'pk_attr': 'id', 'table_description': 'A photo or file sent in chat without a ticket number, stored and waiting'},
            bases=['Model'],
        ),
    ]
