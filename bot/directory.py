"""The directory: who people are (actors), who a notice goes to (recipients)."""

from __future__ import annotations

from tortoise.expressions import Q

from bot.domain.enums import Role
from bot.domain.ticket import Actor, Audience, Medium, Ticket
from models import GroupChat, Staff

_GROUP_OF = {
    Audience.DEALER_GROUP: "dealer",
    Audience.REGION_GROUP: "region",
    Audience.HQ_GROUP: "hq",
    Audience.CALL_CENTRE_GROUP: "call_centre",
}

# For each people-audience: the roles, and where they sit relative to the ticket.
_PEOPLE: dict[Audience, tuple[tuple[Role, ...], str]] = {
    Audience.DEALER_HANDLERS: ((Role.DEALER_STAFF,), "dealer"),
    Audience.DEALER_MANAGERS: ((Role.DEALER_MANAGER,), "dealer"),
    Audience.DEALER_LEADERS: ((Role.DEALER_MANAGER, Role.DEALER_GM), "dealer"),
    Audience.REGION_HANDLERS: ((Role.REGION_STAFF,), "region"),
    Audience.HQ_HANDLERS: ((Role.HQ_STAFF,), "hq"),
    Audience.SECOND_LEVEL_MANAGER: ((Role.SECOND_LEVEL_MANAGER,), "region_else_hq"),
    Audience.SENIOR_MANAGER: ((Role.SENIOR_MANAGER,), "region_else_hq"),
    Audience.BRAND_AND_LEGAL: ((Role.BRAND_DIVISION, Role.LEGAL), "anywhere"),
    Audience.LEGAL: ((Role.LEGAL,), "anywhere"),
}


def actor_of(staff: Staff) -> Actor:
    """The domain's view of a staff member (dealer and region prefetched)."""
    dealer = staff.dealer
    region_code = None
    if dealer is not None:
        region_code = dealer.region.code
    elif staff.region is not None:
        region_code = staff.region.code
    return Actor(
        userid=staff.userid,
        role=staff.role,
        name=staff.name,
        dealer_code=dealer.code if dealer else None,
        region_code=region_code,
    )


async def actor_for(userid: str) -> Actor | None:
    """The active staff member with this WeChat Work userid, if any."""
    staff = await Staff.get_or_none(userid=userid, active=True).prefetch_related(
        "dealer__region", "region"
    )
    return actor_of(staff) if staff else None


async def recipients_for(audience: Audience, medium: Medium, ticket: Ticket) -> list[str]:
    """Addresses for a notice: group chatids, userids, e-mail addresses or the
    customer's phone. The employee a complaint is about is never among them (R22)."""
    if audience is Audience.CUSTOMER:
        return [ticket.customer_phone] if ticket.customer_phone else []
    if audience in _GROUP_OF:
        query = GroupChat.filter(kind=_GROUP_OF[audience])
        if audience is Audience.DEALER_GROUP:
            query = query.filter(dealer__code=ticket.dealer_code)
        elif audience is Audience.REGION_GROUP:
            query = query.filter(region__code=ticket.region_code)
        return list(await query.order_by("id").values_list("chatid", flat=True))
    if audience is Audience.ASSIGNEE:
        people = Staff.filter(userid=ticket.assignee or "", active=True)
    else:
        roles, where = _PEOPLE[audience]
        people = Staff.filter(role__in=roles, active=True)
        if where == "dealer":
            people = people.filter(dealer__code=ticket.dealer_code)
        elif where == "region":
            people = people.filter(region__code=ticket.region_code)
        elif where == "hq":
            people = people.filter(dealer_id=None, region_id=None)
        elif where == "region_else_hq":
            regional = people.filter(region__code=ticket.region_code)
            people = regional if await regional.exists() else people.filter(
                dealer_id=None, region_id=None
            )
    if ticket.about_staff:
        people = people.exclude(userid=ticket.about_staff)
    field = "email" if medium is Medium.EMAIL else "userid"
    found = await people.filter(~Q(**{field: ""})).order_by("id").values_list(field, flat=True)
    return list(dict.fromkeys(found))
