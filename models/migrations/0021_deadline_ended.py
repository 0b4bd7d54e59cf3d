from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0020_sent_card_spent_code')]

    initial = False

    # Swept deadlines stayed "applied" after their ticket moved on, and now
    # "applied" means still running (overdue): those of finished tickets are
    # over. An open ticket's stale ones end at its next change of clocks.
    operations = [
        ops.RunSQL(
            "UPDATE deadline SET state = 'ended' WHERE state = 'applied' AND ticket_id IN "
            "(SELECT id FROM ticket WHERE status IN "
            "('staged_closed', 'closed', 'closed_unreachable', 'cancelled'))"),
    ]
