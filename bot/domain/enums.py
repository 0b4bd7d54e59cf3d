"""The vocabulary of the process: values are the API's lower-case English,
`label` is what people read."""

from __future__ import annotations

from enum import StrEnum


class _Labelled(StrEnum):
    """A string enum whose members carry a Chinese label for people."""

    label: str

    def __new__(cls, value: str, label: str = "") -> _Labelled:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label or value
        return member


class Category(_Labelled):
    GENERAL = "general", "一般投诉"
    ESCALATED = "escalated", "升级投诉"
    IMPORTANT = "important", "重要投诉"


class OwnerLevel(_Labelled):
    DEALER = "dealer", "经销商"
    REGION = "region", "区域"
    HQ = "hq", "本部"


class Channel(_Labelled):
    PHONE = "phone", "电话"
    FAX = "fax", "传真"
    EMAIL = "email", "邮件"
    WEB = "web", "网络"
    LETTER = "letter", "信函"
    WECHAT = "wechat", "微信"
    WEIBO = "weibo", "微博"
    WALK_IN = "walk_in", "到店"
    SURVEY = "survey", "调研回访"
    LOCAL_MEDIA = "local_media", "地方媒体"
    CENTRAL_MEDIA = "central_media", "中央媒体"
    LOCAL_AGENCY = "local_agency", "地方投诉受理机构"
    NATIONAL_AGENCY = "national_agency", "国家级投诉受理机构"
    NEW_MEDIA = "new_media", "新媒体"
    MANUFACTURER = "manufacturer", "厂家"
    GROUP_OFFICE = "group_office", "集团办公室"
    LAW_FIRM = "law_firm", "律师事务所"
    PARENT_COMPANY = "parent_company", "母公司"


class Flag(_Labelled):
    AIRBAG = "airbag", "气囊"
    FIRE = "fire", "火烧车"
    ACCIDENT = "accident", "事故车"
    RECALL = "recall", "召回"
    SERVICE_ACTION = "service_action", "服务行动"
    CROWD = "crowd", "聚众"
    NEW_MEDIA_MAJOR = "new_media_major", "新媒体重大影响"
    BLOCKING_ENTRANCE = "blocking_entrance", "堵门"
    DISTURBANCE = "disturbance", "闹事"
    RETURN_EXCHANGE = "return_exchange", "退换车"
    LEGAL_THREAT = "legal_threat", "法律诉讼"
    MAJOR = "major", "重大"


class Status(_Labelled):
    DISPATCHED = "dispatched", "待响应"
    RESPONDED = "responded", "已响应"
    SOLUTION_PROPOSED = "solution_proposed", "已提交首次方案"
    FOLLOWING_UP = "following_up", "回访跟踪中"
    RESOLVED = "resolved", "经销商已处理待回访"
    STAGED_CLOSURE_PENDING = "staged_closure_pending", "阶段性结案审批中"
    STAGED_CLOSED = "staged_closed", "阶段性结案"
    CLOSED = "closed", "已结案"
    CLOSED_UNREACHABLE = "closed_unreachable", "无法联系结案"
    CANCELLED = "cancelled", "已撤销"

    @property
    def is_final(self) -> bool:
        """A ticket in a final state runs no clock until it is reopened."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {Status.STAGED_CLOSED, Status.CLOSED, Status.CLOSED_UNREACHABLE, Status.CANCELLED}
)
"""The states a ticket is finished in (closed one way or another, or cancelled)."""


class Role(_Labelled):
    CALL_CENTRE = "call_centre", "呼叫中心"
    DEALER_STAFF = "dealer_staff", "经销商客户关系专员"
    DEALER_MANAGER = "dealer_manager", "经销商部门负责人"
    DEALER_GM = "dealer_gm", "经销商总经理"
    REGION_STAFF = "region_staff", "区域事业部"
    SECOND_LEVEL_MANAGER = "second_level_manager", "二级经理"
    SENIOR_MANAGER = "senior_manager", "高级经理"
    HQ_STAFF = "hq_staff", "本部"
    BRAND_DIVISION = "brand_division", "品牌事业部管理部"
    LEGAL = "legal", "法务部"
    ADMIN = "admin", "管理员"


class Clock(_Labelled):
    """The named deadlines a ticket can have pending (R10-R23)."""

    RESPONSE = "response", "响应"
    FIRST_SOLUTION = "first_solution", "首次方案"
    SOLUTION_EMAIL = "solution_email", "方案逾期"
    FOLLOWUP = "followup", "回访跟踪"
    RESOLUTION = "resolution", "三日解决"
    CALLBACK = "callback", "呼叫中心回访"
    STAGED_DECISION = "staged_decision", "阶段性结案审批"
    MAJOR_WARNING = "major_warning", "重大投诉预警"
    NO_AGREEMENT = "no_agreement", "客户不接受方案待区域决定"
    STORE_CONFIRM = "store_confirm", "呼叫中心确认门店登记"


class Source(_Labelled):
    """Which door a complaint came in by: the call-centre system's API, a
    call-centre agent's /new in chat, or dealer staff recording a walk-in or
    a call to the store (4S-store rules) with /new in their group."""

    API = "api", "呼叫中心系统"
    CHAT = "chat", "呼叫中心聊天登记"
    STORE = "store", "门店登记"


class Slot(_Labelled):
    MORNING = "morning", "上午"
    AFTERNOON = "afternoon", "下午"
    EVENING = "evening", "晚上"
