"""The exact shapes WeChat Work accepts, per surface, for the emulator to check.

Two surfaces send template cards and they differ:

- the smart robot (doc 101032; the official SDK WecomTeam/aibot-node-sdk,
  `types/api.ts` `TemplateCard`): passive replies to a message (`stream`,
  `template_card`, `stream_with_template_card`), the answer to a click
  (`update_template_card`) and the body posted to a `response_url`;
- the self-built app (`message/send` template_card, doc 90236, and
  `message/update_template_card`, doc 94888), whose button_interaction card
  also has `replace_text` (the greyed-out button's text).

A schema is a `Field` tree: the field names a surface knows, their JSON
types, the hard limits the platform enforces (bytes of ids and keys, list
lengths, the `task_id` alphabet) and what is required. Lengths the documents
only *recommend* ("建议不超过 N 个字") are not checked: the platform cuts
them rather than refusing. Each check returns None or the refusal the
platform would answer, `{"errcode", "errmsg"}`, naming the offending path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

Surface = Literal["robot", "app"]

# errcodes of the platform's refusals: a parameter that is not allowed or
# malformed, a task_id out of its alphabet, a content over its byte limit.
INVALID_PARAMETER = 40058
INVALID_TASK_ID = 40035
CONTENT_TOO_LONG = 40058
STREAM_LIMIT = 20480
TASK_ID = re.compile(r"^[0-9A-Za-z_\-@]{1,128}$")


@dataclass(frozen=True)
class Field:
    """One JSON value's schema: `kind` is str, int, bool, number, object or
    list; `fields` the members of an object (or of each list item), `item`
    the schema of the items of a list of scalars; limits are hard ones."""

    kind: str
    required: bool = False
    max_bytes: int | None = None
    min_items: int = 0
    max_items: int | None = None
    choices: tuple[Any, ...] = ()
    pattern: re.Pattern[str] | None = None
    fields: dict[str, Field] = field(default_factory=dict)
    item: Field | None = None


def _s(required: bool = False, **kw: Any) -> Field:
    return Field("str", required=required, **kw)


def _obj(required: bool = False, **fields: Field) -> Field:
    return Field("object", required=required, fields=fields)


def _list(item: Field, *, required: bool = False, min_items: int = 0,
          max_items: int | None = None) -> Field:
    return Field("list", required=required, min_items=min_items, max_items=max_items, item=item)


_KEY = _s(True, max_bytes=1024)
_LINK = {"url": _s(), "appid": _s(), "pagepath": _s()}
_OPTION = _obj(id=_s(True, max_bytes=128), text=_s(True), is_checked=Field("bool"))
_SELECTION = _obj(question_key=_KEY, title=_s(), disable=Field("bool"), selected_id=_s(),
                  option_list=_list(_OPTION, required=True, min_items=1, max_items=10))
_FEEDBACK = _obj(id=_s(True, max_bytes=256))


def _card_fields(surface: Surface) -> dict[str, Field]:
    """The template card's members on `surface`."""
    row_types: tuple[int, ...] = (0, 1, 3) if surface == "robot" else (0, 1, 2, 3)
    jump_types: tuple[int, ...] = (0, 1, 2, 3) if surface == "robot" else (0, 1, 2)
    row = _obj(type=Field("int", choices=row_types), keyname=_s(True), value=_s(), url=_s(),
               userid=_s(), **({"media_id": _s()} if surface == "app" else {}))
    jump = _obj(type=Field("int", choices=jump_types), title=_s(True), **_LINK,
                **({"question": _s(max_bytes=200)} if surface == "robot" else {}))
    button = _obj(text=_s(True), style=Field("int"), key=_KEY,
                  **({"type": Field("int", choices=(0, 1)), "url": _s()}
                     if surface == "app" else {}))
    fields: dict[str, Field] = {
        "card_type": _s(True, choices=("text_notice", "news_notice", "button_interaction",
                                       "vote_interaction", "multiple_interaction")),
        "source": _obj(icon_url=_s(), desc=_s(), desc_color=Field("int", choices=(0, 1, 2, 3))),
        "action_menu": _obj(desc=_s(True), action_list=_list(
            _obj(text=_s(True), key=_KEY), required=True, min_items=1, max_items=3)),
        "main_title": _obj(title=_s(), desc=_s()),
        "emphasis_content": _obj(title=_s(), desc=_s()),
        "quote_area": _obj(type=Field("int", choices=(0, 1, 2)), title=_s(), quote_text=_s(),
                           **_LINK),
        "sub_title_text": _s(),
        "horizontal_content_list": _list(row, max_items=6),
        "jump_list": _list(jump, max_items=3),
        "card_action": _obj(type=Field("int", required=True, choices=(0, 1, 2)), **_LINK),
        "card_image": _obj(url=_s(True), aspect_ratio=Field("number")),
        "image_text_area": _obj(type=Field("int", choices=(0, 1, 2)), title=_s(), desc=_s(),
                                image_url=_s(True), **_LINK),
        "vertical_content_list": _list(_obj(title=_s(True), desc=_s()), max_items=4),
        "button_selection": _SELECTION,
        "button_list": _list(button, max_items=6),
        "checkbox": _obj(question_key=_KEY, disable=Field("bool"),
                         mode=Field("int", choices=(0, 1)),
                         option_list=_list(_OPTION, required=True, min_items=1, max_items=20)),
        "select_list": _list(_SELECTION, max_items=3),
        "submit_button": _obj(text=_s(True), key=_KEY),
        "task_id": _s(pattern=TASK_ID),
    }
    if surface == "robot":
        fields["feedback"] = _FEEDBACK
    else:
        # The app's greyed-out button text (and the news/text notices' own
        # fields the robot does not have).
        fields["replace_text"] = _s()
    return fields


CARDS: dict[Surface, Field] = {s: Field("object", required=True, fields=_card_fields(s))
                               for s in ("robot", "app")}

_STREAM = _obj(True, id=_s(True), finish=Field("bool"), content=_s(max_bytes=STREAM_LIMIT),
               msg_item=_list(_obj(msgtype=_s(True, choices=("image",)), image=_obj(
                   True, base64=_s(True), md5=_s(True))), max_items=10),
               feedback=_FEEDBACK)

ROBOT_MESSAGE_REPLIES: dict[str, Field] = {
    "stream": _obj(msgtype=_s(True), stream=_STREAM),
    "template_card": _obj(msgtype=_s(True), template_card=CARDS["robot"]),
    "stream_with_template_card": _obj(msgtype=_s(True), stream=_STREAM,
                                      template_card=Field("object",
                                                          fields=CARDS["robot"].fields)),
}
ROBOT_CLICK_REPLY = _obj(response_type=_s(True, choices=("update_template_card",)),
                         userids=_list(_s()), template_card=CARDS["robot"])
ROBOT_RESPONSE_URL: dict[str, Field] = {
    "markdown": _obj(msgtype=_s(True),
                     markdown=_obj(True, content=_s(True, max_bytes=STREAM_LIMIT))),
    "template_card": _obj(msgtype=_s(True), template_card=CARDS["robot"]),
}
ROBOT_PUSHES: dict[str, Field] = {
    kind: _obj(chatid=_s(True), chat_type=Field("int", required=True, choices=(1, 2)),
               **schema.fields)
    for kind, schema in ROBOT_RESPONSE_URL.items()
}
"""`aibot_send_msg` bodies (long connection): a chat and what a response_url takes."""
APP_UPDATE = _obj(
    userids=_list(_s(), max_items=1000), partyids=_list(Field("int"), max_items=100),
    tagids=_list(Field("int"), max_items=100), atall=Field("int", choices=(0, 1)),
    agentid=Field("int", required=True), response_code=_s(True),
    enable_id_trans=Field("int"), button=_obj(replace_name=_s(True)),
    template_card=CARDS["app"],
)


def problem(value: Any, schema: Field, path: str = "") -> dict[str, Any] | None:
    """The platform's refusal of `value` under `schema`, or None when it fits."""
    where = path or "body"
    kinds = {"str": str, "bool": bool, "object": dict, "list": list}
    if schema.kind in ("int", "number"):
        fits = isinstance(value, int | float) if schema.kind == "number" else isinstance(value, int)
        fits = fits and not isinstance(value, bool)
    else:
        fits = isinstance(value, kinds[schema.kind])
    if not fits:
        return _refusal(INVALID_PARAMETER, f"{where} must be {schema.kind}")
    if schema.choices and value not in schema.choices:
        return _refusal(INVALID_PARAMETER, f"{where} must be one of {list(schema.choices)}")
    if isinstance(value, str):
        if schema.max_bytes is not None and len(value.encode()) > schema.max_bytes:
            return _refusal(CONTENT_TOO_LONG, f"{where} longer than {schema.max_bytes} bytes")
        if schema.pattern is not None and not schema.pattern.match(value):
            code = INVALID_TASK_ID if path.endswith("task_id") else INVALID_PARAMETER
            return _refusal(code, f"{where}: 1-128 bytes of [0-9A-Za-z_-@]")
    if isinstance(value, list):
        if len(value) < schema.min_items or (schema.max_items is not None
                                             and len(value) > schema.max_items):
            most = "" if schema.max_items is None else f", at most {schema.max_items}"
            return _refusal(INVALID_PARAMETER, f"{where}: at least {schema.min_items} items{most}")
        assert schema.item is not None
        for index, item in enumerate(value):
            if found := problem(item, schema.item, f"{path}[{index}]"):
                return found
    if isinstance(value, dict):
        for name in value:
            if name not in schema.fields:
                return _refusal(INVALID_PARAMETER, f"unknown field {_join(path, name)}")
        for name, member in schema.fields.items():
            if name not in value:
                if member.required:
                    return _refusal(INVALID_PARAMETER, f"{_join(path, name)} missing")
                continue
            if found := problem(value[name], member, _join(path, name)):
                return found
    return None


def card_problem(card: Any, surface: Surface) -> dict[str, Any] | None:
    """Why `surface` would refuse this template card; None when it takes it.
    An interactive card needs its task_id, a button card its buttons."""
    found = problem(card, CARDS[surface], "template_card")
    if found is not None:
        return found
    if card["card_type"] != "text_notice" and card["card_type"] != "news_notice":
        if "task_id" not in card:
            return _refusal(INVALID_TASK_ID, "template_card.task_id missing")
    if card["card_type"] == "button_interaction" and not card.get("button_list"):
        return _refusal(INVALID_PARAMETER, "template_card.button_list: 1 to 6 buttons")
    return None


def robot_message_reply_problem(reply: Any) -> dict[str, Any] | None:
    """Why the robot would refuse this passive reply to a message."""
    return _message_problem(reply, ROBOT_MESSAGE_REPLIES, "is no reply to a message")


def _message_problem(message: Any, schemas: dict[str, Field],
                     refusal: str) -> dict[str, Any] | None:
    """Why a message of one of `schemas` (by its msgtype) is refused, its
    robot card included."""
    msgtype = message.get("msgtype") if isinstance(message, dict) else None
    schema = schemas.get(str(msgtype))
    if schema is None:
        return _refusal(INVALID_PARAMETER, f"msgtype {msgtype!r} {refusal}")
    found = problem(message, schema)
    if found is None and "template_card" in message:
        found = card_problem(message["template_card"], "robot")
    return found


def robot_click_reply_problem(reply: Any, task_id: str) -> dict[str, Any] | None:
    """Why the robot would refuse this answer to a click on card `task_id`:
    an update_template_card whose card keeps the clicked task_id."""
    found = problem(reply, ROBOT_CLICK_REPLY) or card_problem(reply["template_card"], "robot")
    if found is None and reply["template_card"].get("task_id") != task_id:
        found = _refusal(INVALID_TASK_ID, "template_card.task_id is not the clicked card's")
    return found


def clicked_task(message: dict[str, Any]) -> str | None:
    """The task_id a robot callback's card click names (any spelling, under
    `template_card_event` or flat on `event`); None when it is no click."""
    event = message.get("event") if message.get("msgtype") == "event" else None
    if not isinstance(event, dict) or event.get("eventtype") != "template_card_event":
        return None
    nested = event.get("template_card_event")
    fields = {**event, **nested} if isinstance(nested, dict) else event
    return next((str(fields[k]) for k in ("task_id", "taskid", "TaskId") if k in fields), "")


def robot_reply_problem(message: dict[str, Any], reply: Any) -> dict[str, Any] | None:
    """Why the robot would refuse `reply`, the passive answer to the callback
    `message` (a click's answer, or a message's)."""
    task_id = clicked_task(message)
    if task_id is None:
        return robot_message_reply_problem(reply)
    return robot_click_reply_problem(reply, task_id)


def response_url_problem(body: Any, chattype: str) -> dict[str, Any] | None:
    """Why a response_url would refuse `body`: markdown anywhere, a robot
    template card only in a one-to-one chat."""
    msgtype = body.get("msgtype") if isinstance(body, dict) else None
    schema = ROBOT_RESPONSE_URL.get(str(msgtype))
    if schema is None or (chattype == "group" and msgtype != "markdown"):
        return _refusal(40008, "only markdown in a group, a template card one to one")
    found = problem(body, schema)
    if found is None and msgtype == "template_card":
        found = card_problem(body["template_card"], "robot")
    return found


def robot_push_problem(body: Any) -> dict[str, Any] | None:
    """Why the robot's long connection would refuse this push (`aibot_send_msg`)."""
    return _message_problem(body, ROBOT_PUSHES, "cannot be pushed")


def app_update_problem(body: Any) -> dict[str, Any] | None:
    """Why message/update_template_card would refuse `body`: an app card or
    a button replacement, and only the documented members."""
    found = problem(body, APP_UPDATE)
    if found is None and "template_card" not in body and "button" not in body:
        found = _refusal(INVALID_PARAMETER, "template_card or button missing")
    if found is None and "template_card" in body:
        found = card_problem(body["template_card"], "app")
    return found


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _refusal(errcode: int, errmsg: str) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": errmsg}
