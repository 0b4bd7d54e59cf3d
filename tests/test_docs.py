"""The documents an IT team deploys from stay true to the code: the settings
table, the compose file, and the commands the docs tell people to run."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from bot.cli import _parser
from bot.directory import actor_for
from bot.settings import Settings
from bot.settings_doc import BEGIN, END, embed, settings_table
from commands.base import ChatMessage, Context
from commands.router import ROUTER, handle_message
from tests.conftest import T0

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "docs" / "deploy.md"
GUIDE = ROOT / "docs" / "guide.zh-CN.md"
DOCS = [DEPLOY, ROOT / "docs" / "runbook.md", ROOT / "README.md"]


def _section(text: str) -> str:
    return text[text.index(BEGIN) + len(BEGIN): text.index(END)].strip()


def test_deploy_doc_lists_every_setting_as_the_code_defines_it():
    text = DEPLOY.read_text(encoding="utf-8")
    assert _section(text) == settings_table().strip(), (
        "docs/deploy.md is out of date: run python -m bot.settings_doc --write docs/deploy.md"
    )
    for name in Settings.model_fields:
        assert f"| `{name.upper()}` |" in text


def test_the_table_names_defaults_and_descriptions():
    table = settings_table()
    assert "| `SMTP_PORT` | `587` | SMTP port |" in table
    assert "| `WECOM_SECRET` | (unset) | Secret of the self-built app |" in table
    assert "| `WECOM_ROBOT_NAME` | `投诉助手` |" in table


def test_drift_is_detected_and_regeneration_fixes_it():
    stale = DEPLOY.read_text(encoding="utf-8").replace("| `SMTP_PORT` | `587` |",
                                                       "| `SMTP_PORT` | `25` |")
    assert _section(stale) != settings_table().strip()
    assert _section(embed(stale)) == settings_table().strip()
    with pytest.raises(ValueError, match="settings:begin"):
        embed("no markers here")


def test_readme_points_to_the_deploy_guide_instead_of_its_own_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/deploy.md" in readme
    assert "| `SMTP_HOST`" not in readme


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_command_the_docs_name_exists(doc: Path):
    """`complaintbot outbox retry 7` names the command `outbox` and its action `retry`
    (`list|retry|flush` names three actions)."""
    commands = _subcommands(_parser())
    text = doc.read_text(encoding="utf-8")
    named = re.findall(r"complaintbot ([a-z]+)(?: ([a-z|]+))?", text)
    assert named
    for command, action in named:
        assert command in commands, f"{doc.name}: no command `complaintbot {command}`"
        actions = _subcommands(commands[command])
        if actions and action:
            for one in action.split("|"):
                assert one in actions, f"{doc.name}: no `complaintbot {command} {one}`"


def test_compose_runs_postgres_two_replicas_and_a_proxy_with_healthchecks():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert services["db"]["image"].startswith("postgres:")
    replicas = [s for s in services.values() if s.get("build", {}).get("dockerfile")]
    assert len(replicas) == 2
    for bot in replicas:
        assert (ROOT / "deploy" / bot["build"]["context"] / bot["build"]["dockerfile"]).is_file()
        assert bot["environment"]["DATABASE_URL"].startswith("postgres://")
        assert "/healthz" in " ".join(bot["healthcheck"]["test"])
        assert bot["depends_on"]["db"]["condition"] == "service_healthy"
    proxy = services["proxy"]
    mounted = [v.split(":")[0] for v in proxy["volumes"] if v.startswith("./")]
    config = (ROOT / "deploy" / mounted[0]).read_text(encoding="utf-8")
    assert "health_uri /healthz" in config
    assert "bot-1:8080" in config and "bot-2:8080" in config
    assert (ROOT / "deploy" / replicas[0]["env_file"].replace("bot.env", "bot.env.example")
            ).is_file()


def test_the_image_runs_as_a_non_root_user():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.M)
    assert users and users[-1] not in {"root", "0"}


def test_the_guide_explains_every_chat_command():
    guide = GUIDE.read_text(encoding="utf-8")
    for command in ROUTER.commands:
        assert f"/{command.name}" in guide, f"the guide does not mention /{command.name}"


def _any_number(line: str) -> str:
    """A command line with its ticket number (the first argument) as N."""
    return re.sub(r"^(/[a-z-]+ )[#＃]?\d+\b", r"\1N", line.strip())


def test_in_chat_examples_are_the_guides_examples():
    """`/help 命令` shows an example; the guide shows the same command (the
    ticket number aside) with its real answer."""
    guide = GUIDE.read_text(encoding="utf-8")
    shown = {_any_number(line.replace("@投诉助手", "")) for line in guide.splitlines()}
    examples = [c for c in ROUTER.commands if c.example]
    assert len(examples) >= 14
    for command in examples:
        assert command.example.startswith(f"/{command.name}")
        assert _any_number(command.example) in shown, (
            f"/help {command.name} shows {command.example!r}, which the guide does not")


async def test_help_for_one_command_shows_its_example(ledger):
    ctx = Context(actor=await actor_for("sh.zhang"), ledger=ledger, now=T0,
                  zone=ZoneInfo("Asia/Shanghai"))
    msg = ChatMessage(userid="sh.zhang", text="/help 方案", channel="robot",
                      chatid="wrGRP-SH001", msgid="m1")
    reply = await handle_message(msg, ctx)
    assert reply.markdown.splitlines()[-1] == (
        "例如：/plan 1 诉求=更换变速箱 原因=阀体磨损 方案=免费更换阀体并延保一年 接受=是 回访=是")


# -- rule numbers people read (issue 15 part 5) ------------------------------------

PROCESS = ROOT / "docs" / "process.zh-CN.md"
_RULE = re.compile(r"R(\d{1,2})(?:\s*[–-]\s*R(\d{1,2}))?(?!\d)")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_CODE = ("bot", "commands", "webhooks", "schedulers")


def _rules_in(text: str) -> set[int]:
    """The rule numbers a text quotes; R7–R9 quotes R7, R8 and R9."""
    found: set[int] = set()
    for first, last in _RULE.findall(text):
        found.update(range(int(first), int(last or first) + 1))
    return found


def _user_facing_strings() -> dict[str, str]:
    """Every string people may read: the Chinese string literals of the code
    (not docstrings; comments are not strings), every template and the guide,
    by where they are."""
    found: dict[str, str] = {}
    for root in _CODE:
        for path in sorted((ROOT / root).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstrings = {
                id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                              | ast.AsyncFunctionDef)
                and node.body and isinstance(node.body[0], ast.Expr)
                and isinstance(node.body[0].value, ast.Constant)
            }
            for node in ast.walk(tree):
                if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                        and id(node) not in docstrings and _CJK.search(node.value)):
                    found[f"{path.relative_to(ROOT)}:{node.lineno}"] = node.value
        for path in sorted((ROOT / root).rglob("*.j2")):
            found[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    found[str(GUIDE.relative_to(ROOT))] = GUIDE.read_text(encoding="utf-8")
    return found


def test_the_rules_document_defines_r1_to_r26_each_under_its_own_heading():
    headings = re.findall(r"^#{2,4} R(\d+) \S", PROCESS.read_text(encoding="utf-8"), re.M)
    assert [int(n) for n in headings] == list(range(1, 27))


def test_every_rule_number_people_read_is_defined_in_the_rules_document():
    defined = {int(n) for n in re.findall(r"^#{2,4} R(\d+) ", PROCESS.read_text(
        encoding="utf-8"), re.M)}
    quoted = {where: _rules_in(text) for where, text in _user_facing_strings().items()}
    # The scan finds what it should: a reply quoting R12 and a template quoting R20.
    assert any(where.startswith("commands/respond.py:") and 12 in rules
               for where, rules in quoted.items())
    assert 20 in quoted["bot/render/templates/markdown/unroutable.md.j2"]
    assert _rules_in("（R7–R9）") == {7, 8, 9}
    undefined = {where: sorted(rules - defined) for where, rules in quoted.items()
                 if rules - defined}
    assert undefined == {}


async def test_help_and_the_guide_point_to_the_rules_document(ledger):
    ctx = Context(actor=await actor_for("sh.zhang"), ledger=ledger, now=T0,
                  zone=ZoneInfo("Asia/Shanghai"))
    msg = ChatMessage(userid="sh.zhang", text="/help", channel="robot", chatid=None, msgid="m1")
    reply = await handle_message(msg, ctx)
    assert "docs/process.zh-CN.md" in reply.markdown.splitlines()[-1]
    assert PROCESS.is_file()
    assert "](process.zh-CN.md)" in GUIDE.read_text(encoding="utf-8")
