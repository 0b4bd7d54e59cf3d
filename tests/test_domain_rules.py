"""The process rules of PROCESS.md as pure functions: no database, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from bot.domain.approvals import compensation_approver
from bot.domain.classification import classify
from bot.domain.deadlines import pending_deadlines
from bot.domain.enums import Category, Channel, Clock, Flag, OwnerLevel, Role, Slot, Source, Status
from bot.domain.permissions import Action, check, may_see_customer
from bot.domain.repeat import EarlierComplaint, find_related, find_repeat, similarity
from bot.domain.ticket import SYSTEM, Audience, Medium, Notice, Refused
from bot.domain.transitions import (
    acknowledge_major,
    assign,
    attempt,
    close,
    confirm_store,
    deadline_due,
    decide_dispute,
    decide_staged_closure,
    dispatch,
    dispute,
    escalate,
    first_solution,
    followup,
    reopen,
    request_staged_closure,
    resolve,
    respond,
    slot_of,
)
from bot.intake import IntakeError, parse_complaint
from tests.conftest import T0
from tests.factories import (
    BJ_STAFF,
    CALL_CENTRE,
    EAST,
    EAST_SECOND,
    EAST_SENIOR,
    HQ,
    HZ_STAFF,
    LEGAL,
    NORTH,
    PLAN,
    SH_STAFF,
    SH_STAFF_2,
    make_ticket,
)

H = timedelta(hours=1)
D = timedelta(days=1)


def due(ticket, policy) -> dict[Clock, object]:
    return {d.clock: d.due_at for d in pending_deadlines(ticket, policy)}


def kinds(outcome) -> set[tuple[str, Audience, Medium]]:
    return {(n.kind, n.audience, n.medium) for n in outcome.notices}


def new_complaint(policy, *, channel=Channel.PHONE, flags=frozenset(), description="变速箱顿挫",
                  explicit=None, repeat_of=None, about_staff=None, related_to=None,
                  source=Source.API, resolved_on_call=False):
    classification = classify(channel=channel, flags=flags, description=description,
                              explicit=explicit, is_repeat=repeat_of is not None, policy=policy)
    return dispatch(
        customer_name="李先生", customer_phone="13812345678", car_model="速腾",
        plate="沪A12345", vin="LFV2A21K6A3012345", channel=channel, description=description,
        dealer_code="SH001", region_code="EAST", flags=flags, about_staff=about_staff,
        repeat_of=repeat_of, classification=classification, policy=policy, now=T0,
        related_to=related_to, source=source, resolved_on_call=resolved_on_call,
    )


# --- intake: R1-R10 ------------------------------------------------------------


def test_r1_dispatch_records_every_ticket_field(policy):
    outcome = new_complaint(policy, flags=frozenset({Flag.FIRE}), about_staff="sh.chen",
                            repeat_of=7)
    t = outcome.ticket
    assert (t.customer_name, t.customer_phone, t.car_model, t.plate, t.vin) == (
        "李先生", "13812345678", "速腾", "沪A12345", "LFV2A21K6A3012345")
    assert (t.channel, t.dealer_code, t.region_code) == (Channel.PHONE, "SH001", "EAST")
    assert t.about_staff == "sh.chen" and t.repeat_of == 7
    assert t.status is Status.DISPATCHED and t.dispatched_at == T0
    assert t.followup_count == 0 and t.attempts == ()
    assert t.policy_version == policy.digest
    assert outcome.event == "dispatched" and outcome.data["repeat_of"] == 7


@pytest.mark.parametrize("channel", [Channel.PHONE, Channel.FAX, Channel.EMAIL, Channel.WEB,
                                     Channel.LETTER, Channel.WECHAT, Channel.WEIBO,
                                     Channel.WALK_IN, Channel.SURVEY, Channel.GROUP_OFFICE])
def test_r2_direct_and_other_channels_stay_general(policy, channel):
    assert new_complaint(policy, channel=channel).ticket.category is Category.GENERAL


def test_r3_general_complaint_goes_to_the_dealer(policy):
    t = new_complaint(policy).ticket
    assert (t.category, t.owner_level) == (Category.GENERAL, OwnerLevel.DEALER)


@pytest.mark.parametrize(
    ("channel", "flags"),
    [(Channel.LOCAL_MEDIA, set()), (Channel.LOCAL_AGENCY, set()), (Channel.NEW_MEDIA, set()),
     (Channel.PHONE, {Flag.RECALL}), (Channel.PHONE, {Flag.SERVICE_ACTION})],
)
def test_r4_media_agencies_and_product_quality_escalate_to_the_region(policy, channel, flags):
    t = new_complaint(policy, channel=channel, flags=frozenset(flags)).ticket
    assert (t.category, t.owner_level) == (Category.ESCALATED, OwnerLevel.REGION)


@pytest.mark.parametrize(
    ("channel", "flags"),
    [(Channel.CENTRAL_MEDIA, set()), (Channel.NATIONAL_AGENCY, set()),
     (Channel.PHONE, {Flag.AIRBAG}), (Channel.PHONE, {Flag.FIRE}),
     (Channel.PHONE, {Flag.ACCIDENT}), (Channel.PHONE, {Flag.CROWD}),
     (Channel.LOCAL_MEDIA, {Flag.NEW_MEDIA_MAJOR})],
)
def test_r5_safety_central_media_and_crowds_are_important_for_hq(policy, channel, flags):
    t = new_complaint(policy, channel=channel, flags=frozenset(flags)).ticket
    assert (t.category, t.owner_level) == (Category.IMPORTANT, OwnerLevel.HQ)


def test_r5_explicit_category_is_never_lowered_by_facts(policy):
    t = new_complaint(policy, explicit=Category.IMPORTANT).ticket
    assert t.category is Category.IMPORTANT
    assert new_complaint(policy, channel=Channel.CENTRAL_MEDIA,
                         explicit=Category.GENERAL).ticket.category is Category.IMPORTANT


def test_r5_region_without_agreement_escalates_to_hq(policy):
    t = make_ticket(policy, T0, category=Category.ESCALATED, owner_level=OwnerLevel.REGION)
    out = escalate(t, EAST, "区域处理后仍未与客户达成一致", T0 + D)
    assert (out.ticket.category, out.ticket.owner_level) == (Category.IMPORTANT, OwnerLevel.HQ)
    assert ("escalated", Audience.HQ_GROUP, Medium.GROUP) in kinds(out)
    assert ("escalated", Audience.SENIOR_MANAGER, Medium.EMAIL) in kinds(out)
    with pytest.raises(Refused, match="已是重要投诉"):
        escalate(out.ticket, HQ, "再升级", T0 + D)


def _earlier(policy, **kw):
    values = dict(number=1000, vin="LFV2A21K6A3012345", plate="沪A12345",
                  description="变速箱顿挫，换挡冲击", dispatched_at=T0 - 30 * D, is_open=False)
    values.update(kw)
    return EarlierComplaint(**values)


def test_r6_same_vin_same_problem_is_a_repeat_dispatched_as_escalated(policy):
    earlier = [_earlier(policy)]
    found = find_repeat(vin="LFV2A21K6A3012345", plate="", description="变速箱又顿挫了",
                        earlier=earlier, policy=policy, now=T0)
    assert found is not None and found.number == 1000
    out = new_complaint(policy, repeat_of=found.number)
    assert out.ticket.category is Category.ESCALATED and out.ticket.repeat_of == 1000
    assert out.ticket.major, "a repeat complaint is also major (R7)"


def test_r6_plate_decides_when_a_vin_is_missing(policy):
    earlier = [_earlier(policy, vin="")]
    assert find_repeat(vin="LFV2A21K6A3012345", plate="沪A-12345", description="变速箱顿挫",
                       earlier=earlier, policy=policy, now=T0) is not None
    other_car = [_earlier(policy, vin="WVWZZZ1KZ6W000001")]
    assert find_repeat(vin="LFV2A21K6A3012345", plate="沪A12345", description="变速箱顿挫",
                       earlier=other_car, policy=policy, now=T0) is None


def test_r6_a_different_problem_or_an_old_one_is_not_a_repeat(policy):
    earlier = [_earlier(policy)]
    assert find_repeat(vin="LFV2A21K6A3012345", plate="", description="销售顾问态度恶劣",
                       earlier=earlier, policy=policy, now=T0) is None
    stale = [_earlier(policy, dispatched_at=T0 - 400 * D)]
    assert find_repeat(vin="LFV2A21K6A3012345", plate="", description="变速箱顿挫",
                       earlier=stale, policy=policy, now=T0) is None
    still_open = [_earlier(policy, is_open=True)]
    assert find_repeat(vin="LFV2A21K6A3012345", plate="", description="销售顾问态度恶劣",
                       earlier=still_open, policy=policy, now=T0) is None


def test_r6_another_problem_on_an_open_ticket_is_related_not_a_repeat(policy):
    """Issue 12 item 4: by default an open ticket of the vehicle about another
    problem links as related; only `open_ticket_is_repeat` makes it a repeat."""
    still_open = [_earlier(policy, is_open=True), _earlier(policy, number=999, is_open=False,
                                                           dispatched_at=T0 - D)]
    kw = {"vin": "LFV2A21K6A3012345", "plate": "", "earlier": still_open, "now": T0}
    repeat = find_repeat(description="承诺的补偿没有兑现", policy=policy, **kw)
    assert repeat is None
    related = find_related(repeat=repeat, policy=policy, **kw)
    assert related is not None and related.number == 1000, "the open one comes first"
    out = new_complaint(policy, related_to=related.number)
    assert out.ticket.related_to == 1000 and out.data["related_to"] == 1000
    assert out.ticket.category is Category.GENERAL and not out.ticket.major
    eager = policy.model_copy(update={"repeat": policy.repeat.model_copy(
        update={"open_ticket_is_repeat": True})})
    found = find_repeat(description="承诺的补偿没有兑现", policy=eager, **kw)
    assert found is not None and found.number == 1000
    assert find_related(repeat=found, policy=eager, **kw) is None


def test_r6_similarity_rule_is_configurable(policy):
    assert similarity("发动机异响", "发动机又有异响") >= 0.5
    strict = policy.model_copy(update={"repeat": policy.repeat.model_copy(
        update={"min_similarity": 1.0, "open_ticket_is_repeat": False})})
    assert find_repeat(vin="LFV2A21K6A3012345", plate="", description="变速箱又顿挫了，换挡冲击",
                       earlier=[_earlier(policy)], policy=strict, now=T0) is None


@pytest.mark.parametrize("flag", [Flag.BLOCKING_ENTRANCE, Flag.DISTURBANCE,
                                  Flag.RETURN_EXCHANGE, Flag.MAJOR])
def test_r7_store_incidents_make_a_complaint_major(policy, flag):
    out = new_complaint(policy, flags=frozenset({flag}))
    assert out.ticket.major and out.ticket.major_since == T0
    assert out.ticket.category is Category.GENERAL, "major is a flag, not a category"


def test_r7_complaint_to_the_manufacturer_is_major(policy):
    assert new_complaint(policy, channel=Channel.MANUFACTURER).ticket.major
    assert not new_complaint(policy).ticket.major


def test_r8_major_complaint_tells_department_head_and_gm_at_once(policy):
    out = new_complaint(policy, flags=frozenset({Flag.DISTURBANCE}))
    assert ("major_alert", Audience.DEALER_LEADERS, Medium.APP) in kinds(out)
    assert ("major_alert", Audience.DEALER_LEADERS, Medium.EMAIL) in kinds(out)
    assert ("major_alert", Audience.DEALER_GROUP, Medium.GROUP) in kinds(out)


def test_r9_brand_division_and_legal_are_warned_and_the_warning_is_tracked(policy):
    out = new_complaint(policy, flags=frozenset({Flag.RETURN_EXCHANGE}))
    assert ("major_warning", Audience.BRAND_AND_LEGAL, Medium.EMAIL) in kinds(out)
    assert due(out.ticket, policy)[Clock.MAJOR_WARNING] == T0 + 24 * H
    nudged = deadline_due(out.ticket, Clock.MAJOR_WARNING, T0 + 24 * H, policy, T0 + 25 * H)
    assert ("major_warning_overdue", Audience.BRAND_AND_LEGAL, Medium.EMAIL) in kinds(nudged)
    acked = acknowledge_major(out.ticket, LEGAL, T0 + 3 * H)
    assert Clock.MAJOR_WARNING not in due(acked.ticket, policy)


def test_r10_dispatch_texts_the_customer_and_cards_the_dealers_handlers(policy):
    out = new_complaint(policy)
    assert ("accepted", Audience.CUSTOMER, Medium.SMS) in kinds(out)
    assert ("dispatched", Audience.DEALER_GROUP, Medium.GROUP) in kinds(out)
    assert ("dispatched", Audience.DEALER_HANDLERS, Medium.APP) in kinds(out)


# --- the general-complaint clock: R11-R16 ------------------------------------------


def test_r11_dealer_may_dispute_within_24_hours_only(policy):
    t = make_ticket(policy, T0)
    out = dispute(t, SH_STAFF, "车辆不是本店售出", policy, T0 + 23 * H)
    assert out.ticket.dispute_open
    assert ("disputed", Audience.CALL_CENTRE_GROUP, Medium.GROUP) in kinds(out)
    with pytest.raises(Refused, match="超过 24 小时"):
        dispute(t, SH_STAFF, "太晚了", policy, T0 + 25 * H)
    with pytest.raises(Refused, match="经销商"):
        dispute(t, EAST, "区域不能提异议", policy, T0 + H)


def test_r11_rejected_dispute_leaves_the_clock_running(policy):
    t = dispute(make_ticket(policy, T0), SH_STAFF, "不是投诉", policy, T0 + H).ticket
    before = due(t, policy)
    with pytest.raises(Refused, match="呼叫中心"):
        decide_dispute(t, SH_STAFF, False, T0 + 2 * H)
    out = decide_dispute(t, CALL_CENTRE, False, T0 + 2 * H)
    assert not out.ticket.dispute_open and due(out.ticket, policy) == before


def test_r11_upheld_dispute_reassigns_with_a_fresh_clock_or_cancels(policy):
    t = dispute(make_ticket(policy, T0), SH_STAFF, "应由杭州店处理", policy, T0 + H).ticket
    moved = decide_dispute(t, CALL_CENTRE, True, T0 + 2 * H, new_dealer=("HZ001", "EAST"))
    assert moved.ticket.dealer_code == "HZ001"
    assert due(moved.ticket, policy)[Clock.RESPONSE] == T0 + 4 * H
    cancelled = decide_dispute(t, CALL_CENTRE, True, T0 + 2 * H)
    assert cancelled.ticket.status is Status.CANCELLED and due(cancelled.ticket, policy) == {}


def test_r12_response_within_2_hours_is_stamped_by_the_system(policy):
    t = make_ticket(policy, T0)
    assert due(t, policy)[Clock.RESPONSE] == T0 + 2 * H
    out = respond(t, SH_STAFF, "已电话联系客户", T0 + 90 * timedelta(minutes=1))
    assert out.ticket.status is Status.RESPONDED
    assert out.ticket.responded_at == T0 + 90 * timedelta(minutes=1)
    assert out.data["minutes"] == 90
    assert Clock.RESPONSE not in due(out.ticket, policy)
    with pytest.raises(Refused, match="已经响应"):
        respond(out.ticket, SH_STAFF, "", T0 + 2 * H)


def test_r12_no_response_in_2_hours_nudges_the_group_and_emails_the_contact(policy):
    t = make_ticket(policy, T0)
    out = deadline_due(t, Clock.RESPONSE, T0 + 2 * H, policy, T0 + 2 * H)
    assert out.event == "deadline_breached"
    assert kinds(out) == {("response_overdue", Audience.DEALER_GROUP, Medium.GROUP),
                          ("response_overdue", Audience.DEALER_HANDLERS, Medium.EMAIL)}


def test_r13_first_solution_in_24h_else_nudge_and_at_2_days_email(policy):
    t = respond(make_ticket(policy, T0), SH_STAFF, "", T0 + H).ticket
    deadlines = due(t, policy)
    assert deadlines[Clock.FIRST_SOLUTION] == T0 + 24 * H
    assert deadlines[Clock.SOLUTION_EMAIL] == T0 + 2 * D
    nudge = deadline_due(t, Clock.FIRST_SOLUTION, T0 + 24 * H, policy, T0 + 24 * H)
    assert kinds(nudge) == {("first_solution_overdue", Audience.DEALER_GROUP, Medium.GROUP)}
    mail = deadline_due(t, Clock.SOLUTION_EMAIL, T0 + 2 * D, policy, T0 + 2 * D)
    assert ("solution_overdue", Audience.DEALER_MANAGERS, Medium.EMAIL) in kinds(mail)
    out = first_solution(t, SH_STAFF, PLAN, T0 + 5 * H)
    assert out.ticket.status is Status.SOLUTION_PROPOSED and out.ticket.solution == PLAN
    assert out.data["customer_accepts"] is True and out.data["return_visit"] is True
    left = due(out.ticket, policy)
    assert Clock.FIRST_SOLUTION not in left and Clock.SOLUTION_EMAIL not in left


def test_r13_first_solution_needs_a_response_first(policy):
    with pytest.raises(Refused, match="尚未响应"):
        first_solution(make_ticket(policy, T0), SH_STAFF, PLAN, T0 + H)


def test_r14_return_visit_within_48h_and_a_third_one_escalates(policy):
    t = respond(make_ticket(policy, T0), SH_STAFF, "", T0 + H).ticket
    assert due(t, policy)[Clock.FOLLOWUP] == T0 + 48 * H
    t = followup(t, SH_STAFF, "第一次回访", policy, T0 + 20 * H).ticket
    assert Clock.FOLLOWUP not in due(t, policy)
    t = followup(t, SH_STAFF, "第二次回访", policy, T0 + 30 * H).ticket
    assert t.category is Category.GENERAL and t.followup_count == 2
    out = followup(t, SH_STAFF, "第三次回访", policy, T0 + 40 * H)
    assert out.ticket.followup_count == 3
    assert (out.ticket.category, out.ticket.owner_level) == (Category.ESCALATED, OwnerLevel.REGION)
    assert out.data["escalated"] is True
    assert ("escalated", Audience.REGION_GROUP, Medium.GROUP) in kinds(out)


def test_r15_unresolved_after_3_days_escalates_to_the_region(policy):
    t = respond(make_ticket(policy, T0), SH_STAFF, "", T0 + H).ticket
    assert due(t, policy)[Clock.RESOLUTION] == T0 + 3 * D
    out = deadline_due(t, Clock.RESOLUTION, T0 + 3 * D, policy, T0 + 3 * D + H)
    assert (out.ticket.category, out.ticket.owner_level) == (Category.ESCALATED, OwnerLevel.REGION)
    assert out.ticket.owner_since == T0 + 3 * D + H
    assert kinds(out) >= {("escalated", Audience.REGION_GROUP, Medium.GROUP),
                          ("escalated", Audience.REGION_HANDLERS, Medium.APP),
                          ("escalated", Audience.SECOND_LEVEL_MANAGER, Medium.EMAIL),
                          ("escalated", Audience.DEALER_GROUP, Medium.GROUP)}
    assert out.data["due_at"] == (T0 + 3 * D).isoformat()


def test_r15_resolved_and_closed_by_the_call_centre_callback(policy):
    t = respond(make_ticket(policy, T0), SH_STAFF, "", T0 + H).ticket
    with pytest.raises(Refused, match="首次方案"):
        resolve(t, SH_STAFF, "已处理", T0 + 2 * H)
    t = first_solution(t, SH_STAFF, PLAN, T0 + 2 * H).ticket
    t = resolve(t, SH_STAFF, "已更换阀体", T0 + D).ticket
    assert Clock.RESOLUTION not in due(t, policy)
    with pytest.raises(Refused, match="呼叫中心"):
        close(t, SH_STAFF, 5, "", T0 + D)
    out = close(t, CALL_CENTRE, 4, "客户满意", T0 + D + H)
    assert out.ticket.status is Status.CLOSED and out.ticket.satisfaction == 4
    assert ("closed", Audience.CUSTOMER, Medium.SMS) in kinds(out)
    assert due(out.ticket, policy) == {}


def test_r15_close_before_response_is_refused(policy):
    with pytest.raises(Refused, match="尚未响应，不能结案"):
        close(make_ticket(policy, T0), CALL_CENTRE, 5, "", T0 + H)


def test_r16_three_failed_attempts_in_three_slots_close_as_unreachable(policy):
    t = make_ticket(policy, T0)
    t = attempt(t, SH_STAFF, Slot.MORNING, policy, T0 + H).ticket
    t = attempt(t, SH_STAFF, Slot.MORNING, policy, T0 + 2 * H).ticket
    t = attempt(t, SH_STAFF, Slot.AFTERNOON, policy, T0 + 6 * H).ticket
    assert t.status is Status.DISPATCHED, "three attempts but only two slots"
    out = attempt(t, SH_STAFF, Slot.EVENING, policy, T0 + 12 * H)
    assert out.ticket.status is Status.CLOSED_UNREACHABLE
    assert out.event == "closed_unreachable" and due(out.ticket, policy) == {}


def test_r16_attempts_spread_over_more_than_3_days_do_not_close(policy):
    t = make_ticket(policy, T0)
    t = attempt(t, SH_STAFF, Slot.MORNING, policy, T0).ticket
    t = attempt(t, SH_STAFF, Slot.AFTERNOON, policy, T0 + 2 * D).ticket
    out = attempt(t, SH_STAFF, Slot.EVENING, policy, T0 + 3 * D + H)
    assert out.ticket.status is Status.DISPATCHED


def test_r16_slot_follows_local_time(policy):
    shanghai = ZoneInfo("Asia/Shanghai")
    assert slot_of(T0, policy, shanghai) is Slot.MORNING  # 09:00 local
    assert slot_of(T0 + 5 * H, policy, shanghai) is Slot.AFTERNOON
    assert slot_of(T0 + 11 * H, policy, shanghai) is Slot.EVENING


# --- escalated and important: R17-R20 -----------------------------------------------


def test_r17_escalated_owner_must_respond_in_2_hours(policy):
    t = deadline_due(make_ticket(policy, T0), Clock.RESOLUTION, T0 + 3 * D, policy,
                     T0 + 3 * D).ticket
    assert due(t, policy) == {Clock.RESPONSE: T0 + 3 * D + 2 * H,
                              Clock.SOLUTION_EMAIL: T0 + 5 * D}
    out = deadline_due(t, Clock.RESPONSE, T0 + 3 * D + 2 * H, policy, T0 + 3 * D + 2 * H)
    assert kinds(out) == {("response_overdue", Audience.REGION_GROUP, Medium.GROUP),
                          ("response_overdue", Audience.REGION_HANDLERS, Medium.EMAIL)}
    with pytest.raises(Refused, match="区域"):
        respond(t, SH_STAFF, "经销商不能代替区域响应", T0 + 3 * D + H)
    with pytest.raises(Refused, match="不属于您所在的区域"):
        respond(t, NORTH, "", T0 + 3 * D + H)
    assert respond(t, EAST, "区域已介入", T0 + 3 * D + H).ticket.owner_responded_at


def test_r18_escalated_without_solution_in_2_days_emails_the_second_level_manager(policy):
    t = make_ticket(policy, T0, category=Category.ESCALATED, owner_level=OwnerLevel.REGION)
    out = deadline_due(t, Clock.SOLUTION_EMAIL, T0 + 2 * D, policy, T0 + 2 * D)
    assert ("solution_overdue", Audience.SECOND_LEVEL_MANAGER, Medium.EMAIL) in kinds(out)
    important = replace(t, category=Category.IMPORTANT, owner_level=OwnerLevel.HQ)
    out = deadline_due(important, Clock.SOLUTION_EMAIL, T0 + 2 * D, policy, T0 + 2 * D)
    assert ("solution_overdue", Audience.SENIOR_MANAGER, Medium.EMAIL) in kinds(out)


def test_r19_a_ticket_its_dealer_holds_cannot_be_staged_not_even_by_the_call_centre(policy):
    t = make_ticket(policy, T0)
    assert t.owner_level is OwnerLevel.DEALER
    for actor in (CALL_CENTRE, EAST, SH_STAFF):
        with pytest.raises(Refused, match="仍由经销商负责.*R19"):
            request_staged_closure(t, actor, "诉求不合理", policy, T0 + H)
    escalated = replace(t, category=Category.ESCALATED, owner_level=OwnerLevel.REGION)
    assert request_staged_closure(escalated, CALL_CENTRE, "诉求不合理", policy,
                                  T0 + H).ticket.status is Status.STAGED_CLOSURE_PENDING


def test_r19_first_request_to_second_level_second_to_senior_never_own(policy):
    t = make_ticket(policy, T0, category=Category.ESCALATED, owner_level=OwnerLevel.REGION)
    with pytest.raises(Refused, match="区域或本部"):
        request_staged_closure(t, SH_STAFF, "诉求不合理", policy, T0 + H)
    first = request_staged_closure(t, EAST, "诉求不合理", policy, T0 + H)
    assert first.ticket.stage_approver is Role.SECOND_LEVEL_MANAGER
    assert due(first.ticket, policy) == {Clock.STAGED_DECISION: T0 + 25 * H}
    with pytest.raises(Refused, match="自己提交"):
        decide_staged_closure(first.ticket, EAST, approve=True, requested_by="east.he",
                              reason="", now=T0 + 2 * H)
    with pytest.raises(Refused, match="二级经理"):
        decide_staged_closure(first.ticket, EAST_SENIOR, approve=True, requested_by="east.he",
                              reason="", now=T0 + 2 * H)
    rejected = decide_staged_closure(first.ticket, EAST_SECOND, approve=False,
                                     requested_by="east.he", reason="请继续协商", now=T0 + 2 * H)
    assert rejected.ticket.status is Status.DISPATCHED
    second = request_staged_closure(rejected.ticket, EAST, "客户拒绝沟通", policy, T0 + 3 * H)
    assert second.ticket.stage_approver is Role.SENIOR_MANAGER
    approved = decide_staged_closure(second.ticket, EAST_SENIOR, approve=True,
                                     requested_by="east.he", reason="", now=T0 + 4 * H)
    assert approved.ticket.status is Status.STAGED_CLOSED
    reopened = reopen(approved.ticket, EAST, "客户再次来电", T0 + 5 * D)
    assert reopened.ticket.status is Status.DISPATCHED and reopened.ticket.reopened_count == 1
    assert due(reopened.ticket, policy)[Clock.RESPONSE] == T0 + 5 * D + 2 * H


def test_r20_a_ticket_is_handed_only_to_someone_who_may_act_on_it(policy):
    t = make_ticket(policy, T0)
    out = assign(t, SH_STAFF, SH_STAFF_2, T0 + H)
    assert out.ticket.assignee == "sh.chen"
    assert ("assigned", Audience.ASSIGNEE, Medium.APP) in kinds(out)
    with pytest.raises(Refused, match="不能指派给"):
        assign(t, SH_STAFF, BJ_STAFF, T0 + H)
    with pytest.raises(Refused, match="不能指派给 冯本部：#1024 当前由经销商负责"):
        assign(t, SH_STAFF, HQ, T0 + H)


# --- dealer-group rules: R22-R26 ---------------------------------------------------


def test_r22_the_employee_complained_about_can_neither_act_nor_see(policy):
    t = make_ticket(policy, T0, about_staff="sh.zhang")
    for action in Action:
        with pytest.raises(Refused, match="按规定您不能处理或查看 #1024"):
            check(SH_STAFF, t, action)
    assert not may_see_customer(SH_STAFF, t) and may_see_customer(SH_STAFF_2, t)
    # The manager is not told why: that would say whom the complaint is about.
    with pytest.raises(Refused) as refused:
        assign(t, SH_STAFF_2, SH_STAFF, T0 + H)
    assert refused.value.reason == "不能指派给 张专员：其无权处理 #1024，请指派其他同事。"


def test_r22_dealer_acts_only_on_its_own_dealers_tickets(policy):
    t = make_ticket(policy, T0)
    with pytest.raises(Refused, match="不属于您所在的经销商"):
        respond(t, HZ_STAFF, "", T0 + H)
    with pytest.raises(Refused, match="不属于您所在的区域"):
        check(NORTH, t, Action.VIEW)
    check(EAST, t, Action.VIEW)
    check(HQ, t, Action.VIEW)
    check(LEGAL, t, Action.VIEW)
    with pytest.raises(Refused, match="只能查看"):
        check(LEGAL, t, Action.FOLLOWUP)


def test_r23_resolved_ticket_gives_the_call_centre_24h_for_the_callback(policy):
    t = respond(make_ticket(policy, T0), SH_STAFF, "", T0 + H).ticket
    t = first_solution(t, SH_STAFF, PLAN, T0 + 2 * H).ticket
    out = resolve(t, SH_STAFF, "处理完毕", T0 + D)
    assert ("resolved", Audience.CALL_CENTRE_GROUP, Medium.GROUP) in kinds(out)
    assert due(out.ticket, policy) == {Clock.CALLBACK: T0 + 2 * D}
    nudge = deadline_due(out.ticket, Clock.CALLBACK, T0 + 2 * D, policy, T0 + 2 * D)
    assert kinds(nudge) == {("callback_overdue", Audience.CALL_CENTRE_GROUP, Medium.GROUP)}


def test_r26_legal_action_in_text_or_flag_is_flagged_to_legal(policy):
    out = new_complaint(policy, description="如果不解决我就找律师起诉你们")
    assert out.ticket.legal
    assert Notice("legal_flag", Audience.LEGAL, Medium.EMAIL) in out.notices
    assert new_complaint(policy, flags=frozenset({Flag.LEGAL_THREAT})).ticket.legal
    assert not new_complaint(policy).ticket.legal


# --- the machinery -------------------------------------------------------------------


def test_final_states_refuse_work_until_reopened(policy):
    t = make_ticket(policy, T0, status=Status.CLOSED, responded_at=T0, closed_at=T0 + D)
    with pytest.raises(Refused, match="重新打开"):
        followup(t, SH_STAFF, "", policy, T0 + 2 * D)
    with pytest.raises(Refused, match="仍在处理中"):
        reopen(make_ticket(policy, T0), CALL_CENTRE, "", T0 + H)


def test_system_actor_may_act_everywhere(policy):
    for action in Action:
        check(SYSTEM, make_ticket(policy, T0, about_staff="system"), action)


@pytest.mark.parametrize(
    ("amount", "role"),
    [("0.01", Role.DEALER_GM), ("2000", Role.DEALER_GM), ("2000.01", Role.SECOND_LEVEL_MANAGER),
     ("20000", Role.SECOND_LEVEL_MANAGER), ("20000.01", Role.SENIOR_MANAGER),
     ("1000000", Role.SENIOR_MANAGER)],
)
def test_r25_compensation_is_approved_by_the_band_that_covers_the_amount(policy, amount, role):
    assert compensation_approver(Decimal(amount), policy) is role


def test_r25_a_table_with_a_ceiling_refuses_amounts_above_it(policy):
    capped = policy.model_copy(update={"compensation": policy.compensation[:2]})
    with pytest.raises(Refused, match="超出权限核决表的上限 20000"):
        compensation_approver(Decimal("20000.01"), capped)
    with pytest.raises(Refused, match="大于 0"):
        compensation_approver(Decimal("0"), policy)


def test_r21_intake_needs_name_phone_car_vehicle_and_text():
    with pytest.raises(IntakeError) as caught:
        parse_complaint({"channel": "phone", "dealer_code": "SH001", "plate": "", "vin": ""})
    assert {"customer_name", "customer_phone", "car_model", "description"} <= set(
        caught.value.fields)
    complaint = parse_complaint({
        "customer_name": " 李先生 ", "customer_phone": "138-1234-5678", "car_model": "速腾",
        "plate": "沪a 12345", "vin": "", "channel": "phone", "description": "异响",
        "dealer_code": "SH001"})
    assert (complaint.customer_name, complaint.customer_phone, complaint.plate) == (
        "李先生", "13812345678", "沪A12345")


# --- the doors of issue 15: the store's own record, first-call resolutions -----------


def test_a_store_record_tells_the_call_centre_which_must_confirm_it(policy):
    outcome = new_complaint(policy, channel=Channel.WALK_IN, source=Source.STORE)
    ticket = outcome.ticket
    assert ("store_reported", Audience.CALL_CENTRE_GROUP, Medium.GROUP) in kinds(outcome)
    assert ("dispatched", Audience.DEALER_HANDLERS, Medium.APP) in kinds(outcome)
    assert due(ticket, policy)[Clock.STORE_CONFIRM] == T0 + policy.store_confirm
    # The clock runs beside the dealer's own, whatever state the dealer reaches.
    resolved = replace(ticket, number=1, status=Status.RESOLVED, resolved_at=T0 + H)
    assert Clock.STORE_CONFIRM in due(resolved, policy)
    confirmed = confirm_store(replace(ticket, number=1), CALL_CENTRE, "", T0 + H)
    assert confirmed.ticket.confirmed_at == T0 + H
    assert kinds(confirmed) == {("store_confirmed", Audience.DEALER_GROUP, Medium.GROUP)}
    assert Clock.STORE_CONFIRM not in due(confirmed.ticket, policy)
    assert Clock.RESPONSE in due(confirmed.ticket, policy)


def test_only_the_call_centre_confirms_and_only_a_store_record(policy):
    store = replace(new_complaint(policy, source=Source.STORE).ticket, number=5)
    with pytest.raises(Refused, match="只有呼叫中心"):
        confirm_store(store, SH_STAFF, "", T0)
    api = replace(new_complaint(policy).ticket, number=6)
    with pytest.raises(Refused, match="不是门店登记的投诉"):
        confirm_store(api, CALL_CENTRE, "", T0)
    assert Clock.STORE_CONFIRM not in due(api, policy)


def test_an_unconfirmed_store_record_nudges_the_call_centre_and_emails_its_agents(policy):
    ticket = replace(new_complaint(policy, source=Source.STORE).ticket, number=5)
    at = T0 + policy.store_confirm
    outcome = deadline_due(ticket, Clock.STORE_CONFIRM, at, policy, at)
    assert kinds(outcome) == {
        ("store_confirm_overdue", Audience.CALL_CENTRE_GROUP, Medium.GROUP),
        ("store_confirm_overdue", Audience.CALL_CENTRE_AGENTS, Medium.EMAIL),
    }
    assert outcome.ticket == ticket, "a reminder changes nothing"


def test_a_first_call_resolution_is_closed_and_tells_nobody(policy):
    outcome = new_complaint(policy, resolved_on_call=True)
    ticket = outcome.ticket
    assert outcome.event == "resolved_on_call" and outcome.notices == ()
    assert (ticket.status, ticket.closed_at, ticket.resolved_on_call) == (Status.CLOSED, T0, True)
    assert due(ticket, policy) == {}
    legal = new_complaint(policy, resolved_on_call=True, description="客户说要找律师")
    assert kinds(legal) == {("legal_flag", Audience.LEGAL, Medium.EMAIL)}, "R26 still holds"


@pytest.mark.parametrize(("extra", "why"), [
    ({"flags": frozenset({Flag.AIRBAG})}, "这是重要投诉"),
    ({"flags": frozenset({Flag.RECALL})}, "这是升级投诉"),
    ({"flags": frozenset({Flag.RETURN_EXCHANGE})}, "这是重大投诉"),
    ({"source": Source.STORE}, "只适用于呼叫中心受理的投诉"),
])
def test_r3_only_a_general_complaint_can_be_settled_on_the_first_call(policy, extra, why):
    with pytest.raises(Refused, match=why):
        new_complaint(policy, resolved_on_call=True, **extra)
