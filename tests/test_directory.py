"""`complaintbot directory import`: the example network loads, a second run
changes nothing, an edit updates exactly the edited row, and a bad file names
its line and writes nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.directory_import import DirectoryError, import_directory
from models import Dealer, GroupChat, Region, Staff
from tests.conftest import ORG, ROOT

EXAMPLE_COUNTS = {"regions": 2, "dealers": 4, "staff": 27, "groups": 8}


async def directory_rows() -> dict[str, list[dict[str, Any]]]:
    """Every directory row, every column, in a stable order."""
    return {
        "regions": await Region.all().order_by("id").values(),
        "dealers": await Dealer.all().order_by("id").values(),
        "staff": await Staff.all().order_by("id").values(),
        "groups": await GroupChat.all().order_by("id").values(),
    }


def counts(rows: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    return {section: len(found) for section, found in rows.items()}


def edited(tmp_path: Path, *replacements: tuple[str, str]) -> tuple[Path, int]:
    """examples/org.yaml with each `old` replaced by `new`, written to tmp_path;
    also the line on which the last replacement starts."""
    text = ORG.read_text(encoding="utf-8")
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} is not in {ORG} exactly once"
        text = text.replace(old, new)
        assert text.count(new) == 1, f"{new!r} would not point at one line"
    line = text[: text.index(replacements[-1][1])].count("\n") + 1
    path = tmp_path / "org.yaml"
    path.write_text(text, encoding="utf-8")
    return path, line


def line_of(path: Path, fragment: str) -> int:
    text = path.read_text(encoding="utf-8")
    return text[: text.index(fragment)].count("\n") + 1


# --- importing through the ORM (SQLite and PostgreSQL) ---------------------------------


async def test_example_network_is_loaded(db) -> None:
    """The fixture's import of examples/org.yaml stored every entry, linked."""
    assert counts(await directory_rows()) == EXAMPLE_COUNTS
    zhang = await Staff.get(userid="sh.zhang").prefetch_related("dealer__region")
    assert (zhang.dealer.code, zhang.dealer.region.code) == ("SH001", "EAST")
    group = await GroupChat.get(chatid="wrGRP-EAST").prefetch_related("region")
    assert (group.kind, group.region.code, group.dealer_id) == ("region", "EAST", None)
    hq = await Staff.get(userid="hq.feng")
    assert (hq.dealer_id, hq.region_id) == (None, None)


async def test_importing_the_same_file_again_changes_nothing(db) -> None:
    """A second run reports "directory unchanged" and leaves every row as it was."""
    before = await directory_rows()
    summary = await import_directory(ORG)
    assert str(summary) == "directory unchanged"
    assert await directory_rows() == before
    assert counts(before) == EXAMPLE_COUNTS


async def test_a_changed_email_updates_exactly_that_row(db, tmp_path) -> None:
    """Editing one staff e-mail updates that column of that row and nothing else."""
    path, _ = edited(tmp_path, ("sh.chen@sh001.example", "chen.new@sh001.example"))
    before = await directory_rows()

    summary = await import_directory(path)

    assert str(summary) == "1 staff updated"
    after = await directory_rows()
    changed = [
        (section, old, new)
        for section in before
        for old, new in zip(before[section], after[section], strict=True)
        if old != new
    ]
    assert len(changed) == 1
    section, old, new = changed[0]
    assert (section, old["userid"]) == ("staff", "sh.chen")
    assert {k for k in old if old[k] != new[k]} == {"email"}
    assert new["email"] == "chen.new@sh001.example"
    assert str(await import_directory(path)) == "directory unchanged"


async def test_a_new_entry_is_created_and_a_moved_dealer_updated(db, tmp_path) -> None:
    """Adding a staff member creates one row; moving a dealer to another region
    updates it in place (same id)."""
    tj_id = (await Dealer.get(code="TJ001")).id
    path, _ = edited(
        tmp_path,
        ("{code: TJ001, name: 天津滨海4S店, region: NORTH}",
         "{code: TJ001, name: 天津滨海4S店, region: EAST}"),
        ("  # Regions: handlers",
         "  - {userid: tj.new, name: 新专员, role: dealer_staff, dealer: TJ001}\n"
         "  # Regions: handlers"),
    )

    summary = await import_directory(path)

    assert str(summary) == "1 staff created, 1 dealers updated"
    assert counts(await directory_rows()) == {**EXAMPLE_COUNTS, "staff": 28}
    tj = await Dealer.get(code="TJ001").prefetch_related("region")
    assert (tj.id, tj.region.code) == (tj_id, "EAST")
    new = await Staff.get(userid="tj.new").prefetch_related("dealer")
    assert (new.dealer.code, new.email, new.active) == ("TJ001", "", True)


@pytest.mark.parametrize(
    ("replacements", "fragment"),
    [
        pytest.param(
            [("role: dealer_gm, dealer: SH001", "role: janitor, dealer: SH001")],
            "staff: role: Input should be",
            id="unknown-role",
        ),
        pytest.param(
            [("dealer_staff, dealer: HZ001, email: hz.sun", "dealer_staff, email: hz.sun")],
            "role dealer_staff needs a dealer",
            id="dealer-staff-without-dealer",
        ),
        pytest.param(
            [("region_staff, region: NORTH, email: north.luo", "region_staff, email: north.luo")],
            "role region_staff needs a region",
            id="region-staff-without-region",
        ),
        pytest.param(
            # an earlier edit in the same file must be rolled back too
            [("cc.wang@brand.example", "cc.wang@changed.example"),
             ("dealer: TJ001, email: tj.zhao", "dealer: XX999, email: tj.zhao")],
            "unknown dealer 'XX999'",
            id="unknown-dealer",
        ),
        pytest.param(
            [("{code: BJ001, name: 北京朝阳4S店, region: NORTH}",
              "{code: BJ001, name: 北京朝阳4S店, region: WEST}")],
            "unknown region 'WEST'",
            id="unknown-region",
        ),
        pytest.param(
            [("kind: region, region: NORTH", "kind: region, region: SOUTH")],
            "unknown region 'SOUTH'",
            id="group-of-unknown-region",
        ),
        pytest.param(
            [("email: sh.wu@sh001.example", "email: sh.wu.sh001.example")],
            "is not an e-mail address",
            id="bad-email",
        ),
        pytest.param(
            [("{code: HZ001, name: 杭州西湖4S店, region: EAST}",
              "{code: HZ001, name: 杭州西湖4S店, region: EAST, phone: 1}")],
            "dealers: phone: Extra inputs are not permitted",
            id="unknown-key",
        ),
        pytest.param(
            [("{code: NORTH, name: 华北区域事业部}", "{code: NORTH, name: 华北区域事业部}}")],
            "not valid YAML",
            id="malformed-yaml",
        ),
        pytest.param(
            [("groups:\n", "branches:\n  - {code: X}\n\ngroups:\n")],
            "unknown section 'branches'",
            id="unknown-section",
        ),
    ],
)
async def test_a_bad_file_names_the_line_and_writes_nothing(
    db, tmp_path, replacements, fragment
) -> None:
    """DirectoryError says `FILE:LINE: what`; the database keeps every row as it was."""
    path, line = edited(tmp_path, *replacements)
    before = await directory_rows()

    with pytest.raises(DirectoryError) as caught:
        await import_directory(path)

    message = str(caught.value)
    assert f"{path}:{line}:" in message
    assert fragment in message
    assert await directory_rows() == before


async def test_a_duplicate_userid_names_both_lines(db, tmp_path) -> None:
    """The second entry of a userid is the error, and it points at the first."""
    path, line = edited(
        tmp_path, ("{userid: cc.li, name: 李客服", "{userid: cc.wang, name: 李客服")
    )
    first = line_of(path, "{userid: cc.wang, name: 王客服")
    before = await directory_rows()

    with pytest.raises(DirectoryError) as caught:
        await import_directory(path)

    assert f"{path}:{line}: staff: userid 'cc.wang' already on line {first}" in str(caught.value)
    assert await directory_rows() == before


async def test_every_bad_entry_is_reported_at_once(db, tmp_path) -> None:
    """Two bad entries give two lines, so one run finds them all."""
    path, _ = edited(
        tmp_path,
        ("role: dealer_gm, dealer: SH001", "role: janitor, dealer: SH001"),
        ("role: dealer_gm, dealer: HZ001", "role: boss, dealer: HZ001"),
    )
    with pytest.raises(DirectoryError) as caught:
        await import_directory(path)
    lines = str(caught.value).splitlines()
    assert [line.split(":")[1] for line in lines] == [
        str(line_of(path, "role: janitor")), str(line_of(path, "role: boss"))
    ]


async def test_a_missing_file_is_a_directory_error(db, tmp_path) -> None:
    with pytest.raises(DirectoryError, match="cannot read"):
        await import_directory(tmp_path / "nowhere.yaml")


# --- the command line ---------------------------------------------------------------


def run_import(file: Path, database: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`complaintbot directory import FILE` against a SQLite file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "SMTP_"))}
    env.update(
        DATABASE_URL=f"sqlite://{database}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "directory", "import", str(file)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=60, check=False,
    )


def sqlite_counts(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as conn:
        return {
            section: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for section, table in (("regions", "region"), ("dealers", "dealer"),
                                   ("staff", "staff"), ("groups", "group_chat"))
        }


def test_cli_imports_once_then_reports_unchanged(tmp_path) -> None:
    """First run creates the example network; the second prints "directory unchanged"."""
    database = tmp_path / "x.sqlite3"

    first = run_import(ORG, database, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == (
        "2 regions created, 4 dealers created, 27 staff created, 8 groups created"
    )
    assert sqlite_counts(database) == EXAMPLE_COUNTS

    second = run_import(ORG, database, tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "directory unchanged"
    assert sqlite_counts(database) == EXAMPLE_COUNTS


def test_cli_rejects_a_bad_file_with_exit_code_2_and_the_line(tmp_path) -> None:
    """A bad file exits 2, names FILE:LINE on stderr without a traceback, writes nothing."""
    database = tmp_path / "x.sqlite3"
    assert run_import(ORG, database, tmp_path).returncode == 0
    bad, line = edited(tmp_path, ("dealer: TJ001, email: tj.zhao", "dealer: XX999, email: tj.zhao"))

    result = run_import(bad, database, tmp_path)

    assert result.returncode == 2
    assert f"{bad}:{line}: unknown dealer 'XX999'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert sqlite_counts(database) == EXAMPLE_COUNTS
