"""R8: the crisis group of a major complaint.

When a ticket becomes major, the ledger writes one outbox row (medium
`crisis`, kind `crisis_group`) in the change's transaction; the outbox worker
creates the group (`appchat/create`) with a chatid derived from the ticket
number, posts the facts and the ticket card, and stores the chatid on the
ticket. The row's dedupe key is the ticket's, so there is one per ticket
whatever is retried; a failed create is retried from that row, and a group
that already exists (an earlier try whose answer was lost, another replica)
counts as created. Later notices of the ticket get a crisis row each, sent
into the group once it exists. When a change brings new people to the
ticket (an escalation to HQ: its handlers and managers), a `crisis_members`
row adds them (`appchat/update`); nobody is removed."""

from __future__ import annotations

from bot.directory import Roster
from bot.domain.enums import OwnerLevel
from bot.domain.ticket import Audience, Medium, Notice, Ticket

CRISIS_MEDIUM = "crisis"
"""The outbox medium of everything posted into a crisis group."""

CRISIS_KIND = "crisis_group"
"""The row that creates the group and posts the facts and the card."""

CRISIS_MEMBERS_KIND = "crisis_members"
"""The row that adds people to the group (`payload` {"add_user_list": […]})."""

CHAT_EXISTS = 86215
"""WeChat Work's answer to appchat/create with a chatid already in use."""

USERLIST_MAX = 2000
"""appchat/create takes 2 to 2,000 members."""

# Who sits in the group: the dealer's GM and department head, the region's
# handlers and managers, the brand division and legal.
_MEMBERS = (
    Audience.DEALER_LEADERS,
    Audience.REGION_HANDLERS,
    Audience.SECOND_LEVEL_MANAGER,
    Audience.SENIOR_MANAGER,
    Audience.BRAND_AND_LEGAL,
)


def crisis_chatid(number: int) -> str:
    """The chatid of ticket `number`'s crisis group: the same on every try and
    replica, so creating it twice is refused by WeChat Work rather than making
    a second group (at most 32 characters of [0-9A-Za-z])."""
    return f"crisis{number}"


def crisis_name(number: int) -> str:
    """The group's name as members see it in their chat list."""
    return f"重大投诉 #{number} 处理小组"


def crisis_members(roster: Roster, ticket: Ticket) -> list[str]:
    """The userids of the crisis group, owner first. The employee the
    complaint is about is never among them (R22: Roster leaves them out)."""
    members: list[str] = []
    # HQ's handlers when HQ holds the ticket; the region's sit there throughout.
    audiences = _MEMBERS + ((Audience.HQ_HANDLERS,) if ticket.owner_level is OwnerLevel.HQ
                            else ())
    for audience in audiences:
        members.extend(roster.recipients(audience, Medium.APP, ticket))
    members = [m for m in dict.fromkeys(members) if m != ticket.about_staff]
    return members[:USERLIST_MAX]


def crisis_joiners(roster: Roster, before: Ticket | None, after: Ticket) -> list[str]:
    """Who a change of a major ticket brings into its crisis group (an
    escalation to HQ: its handlers and managers); none when the change makes
    it major (the group is created with everyone)."""
    if before is None or not before.major or not after.major:
        return []
    present = set(crisis_members(roster, before))
    return [m for m in crisis_members(roster, after) if m not in present]


def crisis_notices(before: Ticket | None, after: Ticket,
                   notices: tuple[Notice, ...]) -> list[tuple[str, str]]:
    """(kind, chatid) of the crisis rows a change writes about a major ticket:
    the group's creation (its row is keyed by the ticket, so only the first is
    stored: a ticket major before groups existed gets one with its next
    notice), then, unless it has just become major (the facts say it all),
    one post per kind of notice the change sends its staff; the customer's
    texts stay out of it."""
    if not after.major:
        return []
    chatid = crisis_chatid(after.number or 0)
    rows = [(CRISIS_KIND, chatid)]
    if before is None or not before.major:
        return rows
    kinds = dict.fromkeys(n.kind for n in notices
                          if n.kind != CRISIS_KIND and n.audience is not Audience.CUSTOMER)
    return rows + [(kind, chatid) for kind in kinds]
