from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0021_deadline_ended')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Ticket',
            index=Index(fields=['dealer_code', 'status']),
        ),
        ops.AddIndex(
            model_name='Ticket',
            index=Index(fields=['region_code', 'status']),
        ),
    ]
