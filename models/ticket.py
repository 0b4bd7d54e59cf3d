"""Tickets, their append-only history and their pending deadlines."""

from tortoise import fields
from tortoise.models import Model

from bot.domain.enums import Category, Channel, Clock, OwnerLevel, Role, Source, Status


class Ticket(Model):
    """One complaint with every field of R1. `id` is the ticket number people see."""

    id = fields.IntField(primary_key=True)
    customer_name = fields.CharField(max_length=64)
    customer_phone = fields.CharField(max_length=32)
    car_model = fields.CharField(max_length=64)
    plate = fields.CharField(max_length=16, default="", db_index=True)
    vin = fields.CharField(max_length=17, default="", db_index=True)
    channel = fields.CharEnumField(Channel, max_length=32)
    description = fields.TextField()
    dealer_code = fields.CharField(max_length=32, db_index=True)
    region_code = fields.CharField(max_length=32, db_index=True)
    category = fields.CharEnumField(Category, max_length=16)
    owner_level = fields.CharEnumField(OwnerLevel, max_length=16)
    status = fields.CharEnumField(Status, max_length=32, db_index=True)
    flags = fields.JSONField(default=list)
    major = fields.BooleanField(default=False)
    major_since = fields.DatetimeField(null=True)
    major_acknowledged_at = fields.DatetimeField(null=True)
    # R8: the crisis group's chatid, once the group exists (bot/crisis.py).
    crisis_chatid = fields.CharField(max_length=32, null=True)
    legal = fields.BooleanField(default=False)
    about_staff = fields.CharField(max_length=64, null=True)
    # R22: the employee complained about, when they have no directory account.
    about_staff_name = fields.CharField(max_length=64, null=True)
    about_staff_role = fields.CharField(max_length=64, null=True)
    repeat_of = fields.IntField(null=True)
    # Another problem of the same vehicle (R6: not a repeat); indexed for the reverse link.
    related_to = fields.IntField(null=True, db_index=True)
    assignee = fields.CharField(max_length=64, null=True)
    policy: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "complaintbot.PolicyVersion", related_name="tickets", on_delete=fields.RESTRICT
    )
    dispatched_at = fields.DatetimeField(db_index=True)
    owner_since = fields.DatetimeField()
    responded_at = fields.DatetimeField(null=True)
    first_solution_at = fields.DatetimeField(null=True)
    owner_responded_at = fields.DatetimeField(null=True)
    owner_solution_at = fields.DatetimeField(null=True)
    escalated_at = fields.DatetimeField(null=True)
    # R15: since when the region has had to decide on a customer's "no agreement".
    no_agreement_at = fields.DatetimeField(null=True)
    resolved_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)
    followup_count = fields.IntField(default=0)
    attempts = fields.JSONField(default=list)
    dispute_open = fields.BooleanField(default=False)
    staged_requests = fields.IntField(default=0)
    status_before_stage = fields.CharEnumField(Status, max_length=32, null=True)
    stage_requested_at = fields.DatetimeField(null=True)
    stage_approver = fields.CharEnumField(Role, max_length=32, null=True)
    reopened_count = fields.IntField(default=0)
    satisfaction = fields.SmallIntField(null=True)
    solution = fields.JSONField(null=True)
    # R23: the customer's last survey answer (bot/domain/survey.py).
    survey_score = fields.SmallIntField(null=True)
    survey_comment = fields.TextField(null=True)
    survey_answered_at = fields.DatetimeField(null=True)
    # The door it came in by (api, chat, store); the call centre confirms a store's record.
    source = fields.CharEnumField(Source, max_length=16, default=Source.API)
    confirmed_at = fields.DatetimeField(null=True)
    # Settled on the first call: closed at intake, never dispatched (counted in reports).
    resolved_on_call = fields.BooleanField(default=False)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "ticket"
        # A dealer's period (R24 reports, the workbook's ticket list) without
        # walking the whole brand's period; a dealer's or region's open
        # tickets (/list) without reading its closed history.
        indexes = (("dealer_code", "dispatched_at"), ("dealer_code", "status"),
                   ("region_code", "status"))


class TicketEvent(Model):
    """One entry of a ticket's history: who, when, what, from where. Never updated."""

    id = fields.BigIntField(primary_key=True)
    ticket: fields.ForeignKeyRelation[Ticket] = fields.ForeignKeyField(
        "complaintbot.Ticket", related_name="events", on_delete=fields.RESTRICT, db_index=True
    )
    at = fields.DatetimeField()
    kind = fields.CharField(max_length=48)
    actor = fields.CharField(max_length=64)
    actor_name = fields.CharField(max_length=64, default="")
    source = fields.CharField(max_length=16)
    data = fields.JSONField(default=dict)

    class Meta:
        table = "ticket_event"
        ordering = ["id"]


RUNNING = ("pending", "applied")
"""The states of a deadline the ticket still runs on (see Deadline.state)."""


class Deadline(Model):
    """One pending (or finished) deadline of a ticket, swept when due.

    (ticket, clock, due_at) is unique: a deadline that moves is a new row, so a
    moved deadline fires again while a re-run sweep never does."""

    id = fields.BigIntField(primary_key=True)
    ticket: fields.ForeignKeyRelation[Ticket] = fields.ForeignKeyField(
        "complaintbot.Ticket", related_name="deadlines", on_delete=fields.RESTRICT
    )
    clock = fields.CharEnumField(Clock, max_length=32)
    due_at = fields.DatetimeField()
    # pending: not yet due or not yet swept; applied: swept (its breach
    # recorded) and the ticket still runs on it, i.e. overdue; ended: applied,
    # then the ticket's clocks moved past it; cancelled: made moot before it
    # fell due (re-armed if wanted again); refused: the sweep's change was
    # refused. Only pending rows fire.
    state = fields.CharField(max_length=16, default="pending")
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "deadline"
        unique_together = (("ticket", "clock", "due_at"),)
        indexes = (("state", "due_at"),)
