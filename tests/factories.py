"""Small builders for domain tests: a ticket and the people of examples/org.yaml."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.domain.enums import Category, Channel, OwnerLevel, Role, Status
from bot.domain.policy import Policy
from bot.domain.ticket import Actor, Solution, Ticket

CALL_CENTRE = Actor("cc.wang", Role.CALL_CENTRE, "王客服")
SH_STAFF = Actor("sh.zhang", Role.DEALER_STAFF, "张专员", dealer_code="SH001", region_code="EAST")
SH_STAFF_2 = Actor("sh.chen", Role.DEALER_STAFF, "陈专员", dealer_code="SH001", region_code="EAST")
HZ_STAFF = Actor("hz.sun", Role.DEALER_STAFF, "孙专员", dealer_code="HZ001", region_code="EAST")
BJ_STAFF = Actor("bj.liu", Role.DEALER_STAFF, "刘专员", dealer_code="BJ001", region_code="NORTH")
EAST = Actor("east.he", Role.REGION_STAFF, "何区域", region_code="EAST")
NORTH = Actor("north.luo", Role.REGION_STAFF, "罗区域", region_code="NORTH")
EAST_SECOND = Actor("east.lin", Role.SECOND_LEVEL_MANAGER, "林二级经理", region_code="EAST")
EAST_SENIOR = Actor("east.gao", Role.SENIOR_MANAGER, "高高级经理", region_code="EAST")
HQ = Actor("hq.feng", Role.HQ_STAFF, "冯本部")
LEGAL = Actor("legal.han", Role.LEGAL, "韩法务")

PLAN = Solution(
    demand="更换变速箱", cause="阀体磨损", solution="免费更换阀体并延保一年",
    customer_accepts=True, return_visit=True,
)


def make_ticket(policy: Policy, at: datetime, **overrides: Any) -> Ticket:
    """A general complaint dispatched to SH001 at `at`."""
    ticket = Ticket(
        number=1024,
        customer_name="李先生",
        customer_phone="13812345678",
        car_model="速腾",
        plate="沪A12345",
        vin="LFV2A21K6A3012345",
        channel=Channel.PHONE,
        description="变速箱顿挫，多次维修未解决",
        dealer_code="SH001",
        region_code="EAST",
        category=Category.GENERAL,
        owner_level=OwnerLevel.DEALER,
        status=Status.DISPATCHED,
        policy_version=policy.digest,
        dispatched_at=at,
        owner_since=at,
    )
    return replace(ticket, **overrides)
