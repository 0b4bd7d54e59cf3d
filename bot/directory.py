"""The directory: who people are (actors), who a notice goes to (recipients)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.db import fetch_rows
from bot.domain.enums import OwnerLevel, Role, Status
from bot.domain.ticket import Actor, Audience, Medium, Ticket

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
    # The call centre's agents sit at no dealer or region, as HQ does.
    Audience.CALL_CENTRE_AGENTS: ((Role.CALL_CENTRE,), "hq"),
    Audience.SECOND_LEVEL_MANAGER: ((Role.SECOND_LEVEL_MANAGER,), "owning_department"),
    Audience.SENIOR_MANAGER: ((Role.SENIOR_MANAGER,), "owning_department"),
    Audience.BRAND_AND_LEGAL: ((Role.BRAND_DIVISION, Role.LEGAL), "anywhere"),
    Audience.LEGAL: ((Role.LEGAL,), "anywhere"),
}
_ANYWHERE = sorted({r.value for roles, where in _PEOPLE.values() if where == "anywhere"
                    for r in roles})


async def actor_for(userid: str) -> Actor | None:
    """The active staff member with this WeChat Work userid, if any."""
    # Plain SQL: every callback asks, and the ORM's joined query cost ~1 ms to build.
    rows = await fetch_rows(
        "SELECT s.userid, s.role, s.name, d.code AS dealer, COALESCE(dr.code, r.code) AS region"
        " FROM staff s LEFT JOIN dealer d ON d.id = s.dealer_id"
        " LEFT JOIN region dr ON dr.id = d.region_id LEFT JOIN region r ON r.id = s.region_id"
        " WHERE s.userid = ? AND s.active", [userid])
    if not rows:
        return None
    row = rows[0]
    return Actor(userid=row["userid"], role=Role(row["role"]), name=row["name"],
                 dealer_code=row["dealer"], region_code=row["region"])


@dataclass(frozen=True)
class _Person:
    userid: str
    role: Role
    email: str
    dealer: str | None
    region: str | None  # the staff row's own region (region staff), not their dealer's
    hq: bool


@dataclass(frozen=True)
class _Group:
    chatid: str
    kind: str
    dealer: str | None
    region: str | None


@dataclass(frozen=True)
class Roster:
    """The staff and groups that notices about some tickets can go to, read in
    two queries; `recipients` picks from them without touching the database,
    so a change (or a sweep's batch of changes) routes all its notices at once."""

    people: tuple[_Person, ...]
    groups: tuple[_Group, ...]

    @classmethod
    async def load(cls, tickets: Iterable[Ticket]) -> Roster:
        """Everyone who may hear about `tickets`: their dealers' and regions'
        staff and groups, HQ, brand division, legal and the assignees."""
        tickets = list(tickets)
        dealers = sorted({t.dealer_code for t in tickets if t.dealer_code})
        regions = sorted({t.region_code for t in tickets if t.region_code})
        assignees = sorted({t.assignee for t in tickets if t.assignee})
        # Plain SQL: this runs in every change, and the ORM's query building
        # cost more than the queries themselves.
        where, params = ["(s.dealer_id IS NULL AND s.region_id IS NULL)"], []
        for column, values in (("d.code", dealers), ("r.code", regions), ("s.role", _ANYWHERE),
                               ("s.userid", assignees)):
            if values:
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        staff = await fetch_rows(
            "SELECT s.userid, s.role, s.email, d.code AS dealer, r.code AS region FROM staff s"
            " LEFT JOIN dealer d ON d.id = s.dealer_id LEFT JOIN region r ON r.id = s.region_id"
            f" WHERE s.active AND ({' OR '.join(where)}) ORDER BY s.id", params)
        where, params = ["g.kind IN ('hq', 'call_centre')"], []
        for kind, column, values in (("dealer", "d.code", dealers), ("region", "r.code", regions)):
            if values:
                where.append(f"(g.kind = '{kind}' AND {column} IN "
                             f"({', '.join('?' * len(values))}))")
                params.extend(values)
        groups = await fetch_rows(
            "SELECT g.chatid, g.kind, d.code AS dealer, r.code AS region FROM group_chat g"
            " LEFT JOIN dealer d ON d.id = g.dealer_id LEFT JOIN region r ON r.id = g.region_id"
            f" WHERE {' OR '.join(where)} ORDER BY g.id", params)
        return cls(
            people=tuple(
                _Person(s["userid"], Role(s["role"]), s["email"], s["dealer"], s["region"],
                        s["dealer"] is None and s["region"] is None)
                for s in staff
            ),
            groups=tuple(_Group(g["chatid"], g["kind"], g["dealer"], g["region"])
                         for g in groups),
        )

    def recipients(self, audience: Audience, medium: Medium, ticket: Ticket) -> list[str]:
        """Addresses for a notice: group chatids, userids, e-mail addresses or
        the customer's phone. The employee a complaint is about is never among
        them (R22)."""
        if audience is Audience.CUSTOMER:
            return [ticket.customer_phone] if ticket.customer_phone else []
        if audience in _GROUP_OF:
            kind = _GROUP_OF[audience]
            return [
                g.chatid for g in self.groups
                if g.kind == kind
                and (kind != "dealer" or g.dealer == ticket.dealer_code)
                and (kind != "region" or g.region == ticket.region_code)
            ]
        if audience is Audience.ASSIGNEE:
            people = [p for p in self.people if p.userid == (ticket.assignee or "")]
        else:
            roles, where = _PEOPLE[audience]
            people = [p for p in self.people if p.role in roles]
            if where == "dealer":
                people = [p for p in people if p.dealer == ticket.dealer_code]
            elif where == "region":
                people = [p for p in people if p.region == ticket.region_code]
            elif where == "hq":
                people = [p for p in people if p.hq]
            elif where == "owning_department":
                # R18/R19: the managers of the department that owns the ticket:
                # HQ's own for an HQ ticket, else its region's (HQ's when the
                # region has none).
                hq = [p for p in people if p.hq]
                regional = [p for p in people if p.region == ticket.region_code]
                people = hq if ticket.owner_level is OwnerLevel.HQ else regional or hq
        found = [p.email if medium is Medium.EMAIL else p.userid
                 for p in people if p.userid != ticket.about_staff]
        return list(dict.fromkeys(a for a in found if a))


async def recipients_for(audience: Audience, medium: Medium, ticket: Ticket) -> list[str]:
    """Addresses for one notice about one ticket (see Roster.recipients)."""
    return (await Roster.load([ticket])).recipients(audience, medium, ticket)


# Who a notice was for, as people read it (the region's notice and /list name
# the audiences nobody could reach).
AUDIENCE_LABELS = {
    Audience.CUSTOMER: "客户",
    Audience.DEALER_GROUP: "经销商投诉群",
    Audience.REGION_GROUP: "区域投诉群",
    Audience.HQ_GROUP: "本部投诉群",
    Audience.CALL_CENTRE_GROUP: "呼叫中心群",
    Audience.CALL_CENTRE_AGENTS: "呼叫中心客服",
    Audience.DEALER_HANDLERS: "经销商客户关系专员",
    Audience.DEALER_MANAGERS: "经销商部门负责人",
    Audience.DEALER_LEADERS: "经销商部门负责人和总经理",
    Audience.REGION_HANDLERS: "区域处理人",
    Audience.HQ_HANDLERS: "本部处理人",
    Audience.SECOND_LEVEL_MANAGER: "二级经理",
    Audience.SENIOR_MANAGER: "高级经理",
    Audience.BRAND_AND_LEGAL: "品牌事业部和法务部",
    Audience.LEGAL: "法务部",
    Audience.ASSIGNEE: "被指派人",
}
_FALLBACKS = (Audience.REGION_GROUP, Audience.HQ_GROUP, Audience.CALL_CENTRE_GROUP)


def fallback_group(
    roster: Roster, ticket: Ticket, missed: set[Audience]
) -> tuple[Audience, list[str]] | None:
    """R20: the group a notice nobody could receive goes to instead: the
    ticket's region group, else HQ's, else the call centre's (never one that
    was itself missed). None when nothing is missed or no group exists."""
    if not missed:
        return None
    for audience in _FALLBACKS:
        if audience in missed:
            continue
        chatids = roster.recipients(audience, Medium.GROUP, ticket)
        if chatids:
            return audience, chatids
    return None


_OPEN = "t.status NOT IN ({})".format(", ".join(f"'{s.value}'" for s in Status if s.is_final))


async def unroutable_count() -> int:
    """How many notices of open tickets nobody could receive (R20, /healthz)."""
    rows = await fetch_rows(
        "SELECT COUNT(*) AS n FROM notification n JOIN ticket t ON t.id = n.ticket_id"
        f" WHERE n.status = 'unroutable' AND {_OPEN}", [])
    return int(rows[0]["n"])


async def unroutable_by_ticket(region_code: str | None) -> dict[int, list[str]]:
    """Open tickets (of one region, or all) with notices nobody could receive:
    ticket number -> who was missed, as people read it (R20, /list)."""
    where, params = f"n.status = 'unroutable' AND {_OPEN}", []
    if region_code is not None:
        where += " AND t.region_code = ?"
        params.append(region_code)
    rows = await fetch_rows(
        "SELECT DISTINCT n.ticket_id AS number, n.audience FROM notification n"
        f" JOIN ticket t ON t.id = n.ticket_id WHERE {where} ORDER BY n.ticket_id, n.audience",
        params)
    missed: dict[int, list[str]] = {}
    for row in rows:
        # Audience is a StrEnum: the stored value finds its label.
        label = AUDIENCE_LABELS.get(row["audience"], row["audience"])
        missed.setdefault(int(row["number"]), []).append(label)
    return missed
