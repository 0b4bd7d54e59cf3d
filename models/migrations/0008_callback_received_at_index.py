from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0007_send_slot')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='ProcessedCallback',
            index=Index(fields=['received_at']),
        ),
    ]
