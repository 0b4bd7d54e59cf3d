from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0018_attachments')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Ticket',
            index=Index(fields=['dealer_code', 'dispatched_at']),
        ),
    ]
