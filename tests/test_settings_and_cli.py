"""Configuration errors are clear at start-up; README and CI run the same command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bot.settings
from bot.db import open_database
from bot.domain.policy import PolicyError
from bot.policy import load_policy
from bot.settings import SettingsError, load_settings
from tests.conftest import ROOT


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "SMTP_"))}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=60, check=False)


def test_invalid_settings_name_each_variable():
    with pytest.raises(SettingsError) as caught:
        load_settings(timezone="Mars/Olympus", database_url="mysql://x", http_port=0)
    message = str(caught.value)
    assert "TIMEZONE: " in message and "Mars/Olympus" in message
    assert "DATABASE_URL: " in message and "HTTP_PORT: " in message


def test_cli_refuses_to_start_with_a_clear_message(tmp_path):
    result = run_cli("migrate", env={"TIMEZONE": "Nowhere/City"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "TIMEZONE" in result.stderr and "Nowhere/City" in result.stderr


def test_policy_file_errors_name_the_field(tmp_path):
    broken = tmp_path / "policy.yaml"
    text = (ROOT / "bot" / "policy.yaml").read_text(encoding="utf-8")
    broken.write_text(text.replace("response: 2h            # R12", "response: soon  # R12"),
                      encoding="utf-8")
    with pytest.raises(PolicyError, match=r"clocks\.general\.response"):
        load_policy(broken)
    result = run_cli("serve", env={"POLICY_FILE": str(broken), "HTTP_PORT": "18099"},
                     cwd=tmp_path)
    assert result.returncode == 2 and "clocks.general.response" in result.stderr


def test_migrate_creates_the_sqlite_database_in_its_folder(tmp_path):
    result = run_cli("migrate", env={"DATABASE_URL": "sqlite://data/cb.sqlite3"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert (tmp_path / "data" / "cb.sqlite3").stat().st_size > 0


def test_attachments_prune_removes_what_no_ticket_uses_and_says_so(tmp_path):
    kept = tmp_path / "files" / "ab" / "cd" / ("abcd" + "0" * 60)
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"x" * 1_500_000)
    leftover = tmp_path / "files" / ".incoming-0123456789abcdef"
    leftover.write_bytes(b"half")
    for path in (kept, leftover):
        os.utime(path, (0, 0))
    env = {"DATABASE_URL": "sqlite://data/cb.sqlite3", "ATTACHMENTS_DIR": "files"}
    result = run_cli("attachments", "prune", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "files no ticket uses, removed: 1 (1.5 MB); leftovers of interrupted writes: 1; "
        "held files whose wait was over: 0")
    assert not kept.exists() and not leftover.exists()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.+?)\n```", readme, flags=re.S)
    start, test = blocks[0], blocks[1]
    assert start.endswith("complaintbot demo")
    assert test in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


async def test_opening_the_database_does_not_change_the_zone_people_read(tmp_path):
    """tortoise writes TIMEZONE=UTC into the environment; settings read later
    still show times in the zone configured at start-up."""
    expected = bot.settings._TIMEZONE_AT_START or "Asia/Shanghai"
    async with open_database(f"sqlite://{tmp_path}/tz.sqlite3"):
        assert os.environ.get("TIMEZONE") == "UTC"  # what tortoise did
        assert load_settings().timezone == expected
