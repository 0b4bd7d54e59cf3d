"""`complaintbot check` run as the operator runs it (a subprocess), against the
WeChat Work emulator, a local SMTP server with AUTH, and a real database."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from bot.db import open_database
from bot.wecom.emulator import WeComEmulator
from tests.conftest import WECOM_SECRETS
from tests.test_storage_faults import tmpfs  # noqa: F401 (a fixture)

SMTP_USER = "bot@brand.example"
SMTP_PASSWORD = "mail-secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Accept:
    """An SMTP handler that accepts everything (the check sends no mail)."""

    async def handle_DATA(self, server, session, envelope) -> str:
        return "250 OK"


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
          and auth_data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_port() -> Iterator[int]:
    """A local SMTP server that requires a login (over plain TCP, as in tests only)."""
    port = _free_port()
    controller = Controller(_Accept(), hostname="127.0.0.1", port=port,
                            authenticator=_authenticate, auth_require_tls=False)
    controller.start()
    yield port
    controller.stop()


@pytest.fixture
async def migrated_sqlite(tmp_path: Path) -> str:
    url = f"sqlite://{tmp_path}/complaintbot.sqlite3"
    async with open_database(url):
        pass
    return url


@pytest.fixture
def environment(migrated_sqlite: str, emulator: WeComEmulator, smtp_port: int) -> dict[str, str]:
    """A complete, correct configuration for the subprocess."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WECOM_", "SMTP_", "SMS_", "DATABASE_", "TENCENT_", "ALIYUN_"))}
    env.update({name.upper(): str(value) for name, value in WECOM_SECRETS.items()})
    env.update({
        "DATABASE_URL": migrated_sqlite,
        "WECOM_API_BASE": f"{emulator.url}/cgi-bin",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SMTP_STARTTLS": "false",
        "SMTP_USERNAME": SMTP_USER,
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "SMS_PROVIDER": "log",
        "ATTACHMENTS_SECRET": "check-secret-0123456789",
        "PUBLIC_BASE_URL": "https://bot.example.com",
        "SURVEY_SECRET": "survey-secret-0123456789",
    })
    return env


async def _check(env: dict[str, str], cwd: Path) -> tuple[int, list[str]]:
    """Run `complaintbot check` without blocking the loop the emulator serves on."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "check", env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode().splitlines()


def _line(lines: list[str], item: str) -> str:
    matches = [line for line in lines if line[2:].startswith(f"{item}:")]
    assert len(matches) == 1, lines
    return matches[0]


async def test_everything_configured_and_working_is_all_green(environment, tmp_path):
    code, lines = await _check(environment, tmp_path)
    assert code == 0, lines
    for item in ("database", "SMTP", "WeChat Work app", "app callback key",
                 "robot callback key", "attachments", "chart font"):
        assert _line(lines, item).startswith("✓"), lines
    assert (tmp_path / "data" / "attachments").is_dir()
    assert "logged in as bot@brand.example" in _line(lines, "SMTP")
    assert _line(lines, "chart font") == (
        "✓ chart font: WenQuanYi Micro Hei (report charts draw Chinese)")
    # The log provider is for development: customers get no text, and it says so.
    assert _line(lines, "SMS").startswith("! SMS: SMS_PROVIDER=log：短信只写入日志，客户收不到")
    assert lines[-1] == "no check failed; 1 warning(s): see the items marked !"


async def test_r10_unset_integrations_are_warnings_that_say_what_will_not_happen(
        migrated_sqlite, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "SMTP_", "SMS_"))}
    code, lines = await _check({**env, "DATABASE_URL": migrated_sqlite}, tmp_path)
    assert code == 0, lines
    assert _line(lines, "SMTP") == (
        "! SMTP: SMTP 未配置：邮件不会发出（经理收不到报表工作簿）；设置 SMTP_HOST 等以启用")
    assert _line(lines, "WeChat Work app").startswith(
        "! WeChat Work app: 企业微信应用未配置：不会给个人发应用消息")
    assert _line(lines, "app callback key").startswith(
        "! app callback key: 应用回调未配置：员工在应用里发的指令和审批点击不会到达；"
        "设置 WECOM_TOKEN、WECOM_AES_KEY")
    assert _line(lines, "robot callback key").startswith(
        "! robot callback key: 智能机器人回调未配置：群里 @机器人 的指令和卡片点击不会到达")
    assert _line(lines, "SMS").startswith("! SMS: SMS_PROVIDER=log")
    assert _line(lines, "attachments") == (
        "! attachments: ATTACHMENTS_SECRET 未设置：附件只列出名称，没有下载链接")
    assert "all checks passed" not in "\n".join(lines)
    assert _line(lines, "survey").startswith("! survey: 满意度评价未开通：结案短信不带评价链接")
    assert lines[-1] == "no check failed; 7 warning(s): see the items marked !"


def test_r8_check_fails_when_no_font_draws_chinese(monkeypatch):
    from bot import check
    from bot.reports import fonts

    monkeypatch.setattr(fonts, "cjk_font", lambda: None)
    finding = asyncio.run(check.check_chart_font(None))  # type: ignore[arg-type]
    text, code = check.report([finding])
    assert code == 1
    assert text.splitlines() == [
        "✗ chart font: no font with Chinese glyphs: report charts show boxes for every "
        "Chinese character; install fonts-wqy-microhei (Debian: apt-get install "
        "fonts-wqy-microhei)",
        "1 check(s) failed"]


@pytest.mark.parametrize(
    ("fault", "item", "names"),
    [
        ({"WECOM_SECRET": "revoked-secret"}, "WeChat Work app", "errcode 40001"),
        ({"WECOM_CORP_ID": "wwwrongcorp"}, "WeChat Work app", "WECOM_CORP_ID is wrong"),
        ({"SMTP_PASSWORD": "wrong"}, "SMTP", "check SMTP_USERNAME and SMTP_PASSWORD"),
        ({"DATABASE_URL": "postgres://postgres@127.0.0.1:9/none"}, "database",
         "check DATABASE_URL and that the server is running"),
        ({"WECOM_ROBOT_AES_KEY": "too-short"}, "robot callback key", "43 characters"),
        ({"PUBLIC_BASE_URL": ""}, "survey", "PUBLIC_BASE_URL not set"),
    ],
)
async def test_one_fault_is_named_in_one_line_and_fails_the_exit_code(
    environment, tmp_path, fault, item, names
):
    code, lines = await _check({**environment, **fault}, tmp_path)
    assert code == 1, lines
    failed = [line for line in lines if line.startswith("✗")]
    assert failed == [_line(lines, item)], lines
    assert names in failed[0]
    assert lines[-1] == "1 check(s) failed"


async def test_pending_migrations_say_to_run_migrate(environment, tmp_path):
    fresh = tmp_path / "fresh.sqlite3"
    sqlite3.connect(fresh).close()  # an empty database, no migration applied
    code, lines = await _check({**environment, "DATABASE_URL": f"sqlite://{fresh}"}, tmp_path)
    assert code == 1
    assert "migration(s) not applied" in _line(lines, "database")
    assert "run `complaintbot migrate`" in _line(lines, "database")


async def test_a_missing_sqlite_file_is_reported_not_created(environment, tmp_path):
    missing = tmp_path / "typo" / "complaintbot.sqlite3"
    code, lines = await _check({**environment, "DATABASE_URL": f"sqlite://{missing}"}, tmp_path)
    assert code == 1
    assert f"no SQLite file at {missing}" in _line(lines, "database")
    assert not missing.parent.exists()


async def test_an_attachment_folder_that_cannot_be_written_fails_the_check(
        migrated_sqlite, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "SMTP_", "SMS_"))}
    code, lines = await _check({**env, "DATABASE_URL": migrated_sqlite,
                                "ATTACHMENTS_DIR": str(blocker / "attachments")}, tmp_path)
    assert code == 1, lines
    assert _line(lines, "attachments").startswith(
        f"✗ attachments: ATTACHMENTS_DIR {blocker}/attachments cannot be written")


async def test_a_disk_nearly_full_is_a_warning_that_says_what_to_do(
        tmpfs: Path, tmp_path: Path) -> None:  # noqa: F811
    # The database and the attachments on a 16 MB disk: both warned of.
    url = f"sqlite://{tmpfs}/complaintbot.sqlite3"
    async with open_database(url):
        pass
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "SMTP_", "SMS_"))}
    code, lines = await _check({**env, "DATABASE_URL": url, "ATTACHMENTS_DIR": str(tmpfs / "files"),
                                "ATTACHMENTS_SECRET": "check-secret-0123456789"}, tmp_path)
    assert code == 0, lines
    database, attachments = _line(lines, "database"), _line(lines, "attachments")
    assert database.startswith("! database: ") and "MB free on its disk" in database
    assert "a full disk refuses every change" in database
    assert attachments.startswith(f"! attachments: {tmpfs}/files writable; only ")
    assert "run `complaintbot attachments prune`" in attachments
