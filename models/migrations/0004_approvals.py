from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0003_sent_card')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ApprovalRequest',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('ticket', fields.ForeignKeyField('complaintbot.Ticket', source_field='ticket_id', db_constraint=True, to_field='id', related_name='approvals', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharField(max_length=16)),
                ('requested_by', fields.CharField(max_length=64)),
                ('requested_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('reason', fields.TextField(unique=False)),
                ('approver_role', fields.CharField(max_length=32)),
                ('approver_userid', fields.CharField(max_length=64)),
                ('amount', fields.DecimalField(null=True, max_digits=12, decimal_places=2)),
                ('status', fields.CharField(default='open', db_index=True, max_length=16)),
                ('decided_by', fields.CharField(null=True, max_length=64)),
                ('decided_on_behalf_of', fields.CharField(null=True, max_length=64)),
                ('decided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('decision_reason', fields.TextField(default='', unique=False)),
            ],
            options={'table': 'approval_request', 'app': 'complaintbot', 'pk_attr': 'id', 'table_description': 'One request for a decision by the person holding an approving role.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Delegation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('approver', fields.CharField(db_index=True, max_length=64)),
                ('delegate', fields.CharField(max_length=64)),
                ('until', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'delegation', 'app': 'complaintbot', 'pk_attr': 'id', 'table_description': 'An approver on leave lets `delegate` decide in their name until `until`.'},
            bases=['Model'],
        ),
    ]
