"""The ticket store: tortoise-orm models, one module per entity group.

tortoise discovers models in the modules listed here (see `bot.db`)."""

from models.approval import ApprovalRequest
from models.attachment import Attachment, PendingAttachment
from models.callback import ProcessedCallback
from models.card import SentCard
from models.delegation import Delegation
from models.deployment import Deployment
from models.directory import Dealer, GroupChat, Region, Staff
from models.heartbeat import Heartbeat
from models.lease import Lease
from models.notification import Notification
from models.policy import PolicyVersion
from models.report_run import ReportRun
from models.send_slot import SendSlot
from models.ticket import RUNNING, Deadline, Ticket, TicketEvent
from models.token import AccessToken

__all__ = [
    "AccessToken",
    "ApprovalRequest",
    "Attachment",
    "Deadline",
    "RUNNING",
    "Dealer",
    "Delegation",
    "Deployment",
    "GroupChat",
    "Heartbeat",
    "Lease",
    "Notification",
    "PendingAttachment",
    "PolicyVersion",
    "ProcessedCallback",
    "ReportRun",
    "SendSlot",
    "Region",
    "SentCard",
    "Staff",
    "Ticket",
    "TicketEvent",
]
