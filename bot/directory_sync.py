"""`complaintbot directory sync`: bring the staff table in line with WeChat
Work's address book (通讯录).

Departments and tags are read from WeChat Work (`department/list`, `tag/list`
+ `tag/get`, `user/list_id` + `user/get`) and placed through a mapping file
(docs/directory-sync.md, examples/directory-sync.yaml): a department stands
for HQ, a region or a dealer, a tag for a role. People are created and
updated in place; those who left (gone from the address book, disabled, or
no longer in a mapped department) are deactivated, never deleted, and the
open work they leave (tickets assigned to them, approvals waiting for them)
goes through the ledger: the region's group is told, and their tickets are
handed on as `leavers.reassign` in bot/policy.yaml says. A second run of the
same address book changes nothing; `dry_run` only reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tortoise.transactions import in_transaction

from bot.clock import utcnow
from bot.db import fetch_rows
from bot.directory_import import DirectoryError, StaffEntry
from bot.domain.enums import FINAL_STATUSES, Role
from bot.domain.leavers import staff_left
from bot.domain.ticket import SYSTEM, Actor
from bot.ledger import Change, Ledger, Transition
from bot.wecom.client import WeComClient
from models import ApprovalRequest, Dealer, Region, Staff
from models import Ticket as TicketRow

log = structlog.get_logger(__name__)

# user/get `status`: 1 active, 2 disabled, 4 not yet activated, 5 quit.
# Someone who has not activated WeChat Work yet still works here.
_PRESENT = {1, 4}
_PAGE = 1000
_FINAL = [status.value for status in FINAL_STATUSES]
_DEFAULT_ROLE = {"hq": Role.HQ_STAFF, "region": Role.REGION_STAFF, "dealer": Role.DEALER_STAFF}


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Placement(_Entry):
    """Where the members of one department (and of its sub-departments not
    mapped themselves) sit, and their role unless a tag says otherwise."""

    hq: bool = False
    region: str | None = None
    dealer: str | None = None
    role: Role | None = None

    @model_validator(mode="after")
    def _one_place(self) -> Placement:
        if sum((self.hq, self.region is not None, self.dealer is not None)) != 1:
            raise ValueError("give exactly one of hq: true, region: CODE, dealer: CODE")
        return self

    @property
    def kind(self) -> str:
        return "hq" if self.hq else "region" if self.region else "dealer"


class Mapping(_Entry):
    """The mapping file: department id -> placement, tag name -> role (the
    first listed tag a member carries wins), userids the sync leaves alone."""

    departments: dict[int, Placement] = Field(min_length=1)
    tags: dict[str, Role] = Field(default_factory=dict)
    keep: list[str] = Field(default_factory=list)


def load_mapping(path: Path) -> Mapping:
    """Read and validate the mapping file; DirectoryError says what is wrong."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DirectoryError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DirectoryError(f"{path}: not valid YAML: {exc}") from None
    try:
        return Mapping.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                             for err in exc.errors())
        raise DirectoryError(f"{path}: {problems}") from None


@dataclass
class SyncReport:
    """What a sync changed (or, dry, would change), line by line."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    handed_on: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        """Whether anything in the directory or a ticket changed."""
        return bool(self.created or self.updated or self.deactivated or self.handed_on)

    def __str__(self) -> str:
        lines = [*(f"+ {line}" for line in self.created), *(f"~ {line}" for line in self.updated),
                 *(f"- {line}" for line in self.deactivated),
                 *(f"> {line}" for line in self.handed_on),
                 *(f"! {line}" for line in self.skipped)]
        verb = "would be" if self.dry_run else ""
        counts = ", ".join(f"{n} staff {verb} {what}".replace("  ", " ") for n, what in (
            (len(self.created), "created"), (len(self.updated), "updated"),
            (len(self.deactivated), "deactivated")) if n)
        lines.append(counts or "directory unchanged")
        if self.dry_run:
            lines.append("dry run: nothing was written")
        return "\n".join(lines)


async def read_address_book(client: WeComClient, mapping: Mapping) -> tuple[
        dict[int, dict[str, Any]], list[dict[str, Any]], dict[str, list[str]]]:
    """Departments by id, every member (user/get's fields) and, for each
    mapped tag, the userids carrying it."""
    departments = {d["id"]: d for d in
                   (await client.address_book("department/list"))["department"]}
    userids: list[str] = []
    cursor = ""
    while True:
        page = await client.address_book("user/list_id", body={"cursor": cursor, "limit": _PAGE})
        userids.extend(dict.fromkeys(u["userid"] for u in page.get("dept_user", [])))
        cursor = page.get("next_cursor") or ""
        if not cursor:
            break
    members = [await client.address_book("user/get", query={"userid": u})
               for u in dict.fromkeys(userids)]
    tagged: dict[str, list[str]] = {}
    if mapping.tags:
        for tag in (await client.address_book("tag/list"))["taglist"]:
            if tag["tagname"] in mapping.tags:
                answer = await client.address_book("tag/get", query={"tagid": str(tag["tagid"])})
                tagged[tag["tagname"]] = [u["userid"] for u in answer.get("userlist", [])]
    return departments, members, tagged


def _placement(member: dict[str, Any], departments: dict[int, dict[str, Any]],
               mapping: Mapping) -> Placement | None:
    """The placement of the member's main department (else the first listed),
    found at it or its nearest mapped ancestor."""
    listed = list(member.get("department") or [])
    main = member.get("main_department")
    for dept in ([main] if main in listed else []) + listed:
        seen: set[int] = set()
        while dept in departments and dept not in seen:
            if dept in mapping.departments:
                return mapping.departments[dept]
            seen.add(dept)
            dept = departments[dept].get("parentid")
    return None


async def sync_directory(client: WeComClient, mapping: Mapping, ledger: Ledger, *,
                         dry_run: bool = False, now: datetime | None = None) -> SyncReport:
    """Read the address book and apply it at `now` (see the module docstring)."""
    departments, members, tagged = await read_address_book(client, mapping)
    regions = {r.code: r for r in await Region.all()}
    dealers = {d.code: d for d in await Dealer.all()}
    report = SyncReport(dry_run=dry_run)
    tag_roles = [(set(tagged.get(name, [])), role) for name, role in mapping.tags.items()]
    wanted: dict[str, dict[str, Any]] = {}
    # Present but not placeable (a mapping mistake): left as they are, not
    # deactivated.
    unplaced: set[str] = set()
    for member in members:
        userid = member["userid"]
        if userid in mapping.keep or member.get("status", 1) not in _PRESENT \
                or member.get("enable", 1) == 0:
            continue
        place = _placement(member, departments, mapping)
        if place is None:
            continue
        role = next((r for users, r in tag_roles if userid in users), None) \
            or place.role or _DEFAULT_ROLE[place.kind]
        dealer = dealers.get(place.dealer) if place.dealer else None
        region = regions.get(place.region) if place.region else None
        if (place.dealer and dealer is None) or (place.region and region is None):
            report.skipped.append(f"{userid}: unknown {place.kind} "
                                  f"{place.dealer or place.region} (import it first)")
            unplaced.add(userid)
            continue
        try:
            StaffEntry(userid=userid, name=member.get("name") or userid, role=role,
                       email=member.get("email") or "", mobile=member.get("mobile") or "",
                       dealer=place.dealer, region=place.region if place.region else None)
        except ValidationError as exc:
            reason = "; ".join(str(e["msg"]) for e in exc.errors())
            report.skipped.append(f"{userid}: {reason}")
            unplaced.add(userid)
            continue
        wanted[userid] = {
            "name": (member.get("name") or userid)[:64], "role": role,
            "email": member.get("email") or "", "mobile": member.get("mobile") or "",
            "dealer_id": dealer.id if dealer else None,
            "region_id": region.id if region else None, "active": True,
        }
    existing = {s.userid: s for s in await Staff.all()}
    leavers = [s for userid, s in sorted(existing.items())
               if s.active and userid not in wanted and userid not in unplaced
               and userid not in mapping.keep]
    async with in_transaction():
        for userid, values in sorted(wanted.items()):
            row = existing.get(userid)
            if row is None:
                report.created.append(f"{userid} {values['name']} {values['role'].value}")
                if not dry_run:
                    await Staff.create(userid=userid, **values)
                continue
            # E-mail and mobile only where the app may read them: an empty
            # field is what it cannot see, not an address removed.
            changed = {k: v for k, v in values.items()
                       if getattr(row, k) != v and (v or k not in ("email", "mobile"))}
            if changed:
                report.updated.append(f"{userid}: " + ", ".join(
                    f"{k} {_shown(getattr(row, k))} → {_shown(v)}" for k, v in changed.items()))
                if not dry_run:
                    row.update_from_dict(changed)
                    await row.save(update_fields=list(changed))
    await _let_go(ledger, leavers, report, dry_run=dry_run, now=now or utcnow())
    log.info("directory_synced", created=len(report.created), updated=len(report.updated),
             deactivated=len(report.deactivated), dry_run=dry_run)
    return report


def _shown(value: Any) -> str:
    return str(getattr(value, "value", value))


async def _active_actors() -> list[Actor]:
    """Every active staff member as an actor, by userid (successor candidates)."""
    rows = await fetch_rows(
        "SELECT s.userid, s.role, s.name, d.code AS dealer, COALESCE(dr.code, r.code) AS region"
        " FROM staff s LEFT JOIN dealer d ON d.id = s.dealer_id"
        " LEFT JOIN region dr ON dr.id = d.region_id LEFT JOIN region r ON r.id = s.region_id"
        " WHERE s.active ORDER BY s.userid", [])
    return [Actor(userid=r["userid"], role=Role(r["role"]), name=r["name"],
                  dealer_code=r["dealer"], region_code=r["region"]) for r in rows]


async def _let_go(ledger: Ledger, leavers: list[Staff], report: SyncReport, *,
                  dry_run: bool, now: datetime) -> None:
    """Deactivate each leaver and, through the ledger, hand on their open work
    (one change per ticket: open tickets assigned to them, open approval
    requests waiting for them), each leaver in one transaction: a run killed
    half-way, or one whose hand-on fails, leaves them active for the next run
    to do whole. Only the run that flips the row hands on: two replicas
    syncing at once must not tell the region twice."""
    if not leavers:
        return
    reassign = ledger.policies.current.leavers.reassign
    gone = {leaver.userid for leaver in leavers}
    candidates = [] if dry_run else [a for a in await _active_actors() if a.userid not in gone]
    for leaver in leavers:
        if dry_run:
            report.deactivated.append(f"{leaver.userid} {leaver.name}")
            report.handed_on += (await _open_work(leaver, reassign))[0]
            continue
        try:
            async with in_transaction():
                if not await Staff.filter(id=leaver.id, active=True).update(active=False):
                    continue
                lines, numbers, approvals = await _open_work(leaver, reassign)
                who = Actor(userid=leaver.userid, role=Role(leaver.role), name=leaver.name)
                results = await ledger.apply_many(
                    [Change(number, _left(who, reassign, candidates, approvals.get(number, []),
                                          now)) for number in numbers],
                    actor=SYSTEM, source="directory_sync", now=now) if numbers else {}
        except Exception:  # this leaver waits for the next run; the others go on
            log.exception("directory_leaver_failed", userid=leaver.userid)
            report.skipped.append(f"{leaver.userid}: their open work could not be handed on; "
                                  "left active for the next sync")
            continue
        report.deactivated.append(f"{leaver.userid} {leaver.name}")
        report.handed_on += lines
        for number, result in sorted(results.items()):
            heir = getattr(result, "data", {}).get("assignee")
            if heir:
                report.handed_on.append(f"  #{number} → {heir}")


async def _open_work(leaver: Staff, reassign: str) -> tuple[
        list[str], list[int], dict[int, list[int]]]:
    """What a leaver leaves: the report's line, the tickets, and the open
    approval requests waiting for them by ticket."""
    assigned = await TicketRow.filter(assignee=leaver.userid).exclude(
        status__in=_FINAL).order_by("id").values_list("id", flat=True)
    approvals: dict[int, list[int]] = {}
    for req_id, number in await ApprovalRequest.filter(
            approver_userid=leaver.userid, status="open").order_by("id").values_list(
            "id", "ticket_id"):
        approvals.setdefault(number, []).append(req_id)
    numbers = sorted({*assigned, *approvals})
    if not numbers:
        return [], [], approvals
    line = (f"{leaver.userid}: tickets {', '.join(f'#{n}' for n in assigned) or 'none'}; "
            f"approvals {', '.join(str(a) for ids in approvals.values() for a in ids) or 'none'}"
            f" (reassign: {reassign})")
    return [line], numbers, approvals


def _left(leaver: Actor, reassign: str, candidates: list[Actor], approvals: list[int],
          now: datetime) -> Transition:
    return lambda ticket: staff_left(ticket, leaver, reassign=reassign, candidates=candidates,
                                     approvals=approvals, now=now)
