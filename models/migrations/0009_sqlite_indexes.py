from tortoise import migrations
from tortoise.migrations import operations as ops

# Earlier migrations rebuilt tables on SQLite (tortoise's AlterField), which
# dropped deadline's UNIQUE (ticket, clock, due_at) and several indexes, and
# never created the foreign-key indexes. Put back what the models declare;
# on PostgreSQL, where they exist under these names, nothing changes.
INDEXES = [
    ('idx_ticket_plate_50c7ae', 'ticket', 'plate'),
    ('idx_ticket_vin_2e3fd1', 'ticket', 'vin'),
    ('idx_ticket_dealer__a4325b', 'ticket', 'dealer_code'),
    ('idx_ticket_region__60882f', 'ticket', 'region_code'),
    ('idx_ticket_status_f3afba', 'ticket', 'status'),
    ('idx_ticket_dispatc_f36717', 'ticket', 'dispatched_at'),
    ('idx_approval_re_status_69122c', 'approval_request', 'status'),
    ('idx_approval_re_ticket__7fb6e2', 'approval_request', 'ticket_id'),
    ('idx_deadline_state_50608c', 'deadline', 'state", "due_at'),
    ('idx_sent_card_ticket__685879', 'sent_card', 'ticket_id'),
    ('idx_ticket_even_ticket__96c4bd', 'ticket_event', 'ticket_id'),
    ('idx_notificatio_ticket__76c8f5', 'notification', 'ticket_id'),
    ('idx_notificatio_status_5784de', 'notification', 'status", "next_attempt_at'),
]


class Migration(migrations.Migration):
    dependencies = [('complaintbot', '0008_auto_20261203_0817')]

    initial = False

    operations = [
        # A duplicate clock row could only have come in while the constraint
        # was missing; keep the first so the unique index can be built.
        ops.RunSQL(
            'DELETE FROM "deadline" WHERE "id" NOT IN (SELECT MIN("id") FROM "deadline" '
            'GROUP BY "ticket_id", "clock", "due_at")'
        ),
        ops.RunSQL(
            'CREATE UNIQUE INDEX IF NOT EXISTS "uid_deadline_ticket__6d3f76" '
            'ON "deadline" ("ticket_id", "clock", "due_at")'
        ),
        *(
            ops.RunSQL(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{columns}")')
            for name, table, columns in INDEXES
        ),
    ]
