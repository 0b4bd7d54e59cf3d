from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0012_ticket_related_to')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Deployment',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('first_day', fields.DateField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'deployment', 'app': 'complaintbot', 'pk_attr': 'id', 'table_description': "The deployment's first day (local date): no report is sent for a period"},
            bases=['Model'],
        ),
    ]
