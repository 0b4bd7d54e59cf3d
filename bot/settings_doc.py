"""The environment table of docs/deploy.md, generated from `Settings`.

`python -m bot.settings_doc` prints the table; `--write docs/deploy.md`
replaces the part between the settings markers, so the document cannot drift
from the code (tests/test_docs.py fails when it has).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import SecretStr

from bot.settings import DEFAULT_POLICY_FILE, Settings

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    value = field.default
    if value is None:
        return "(unset)"
    if isinstance(value, SecretStr):
        return "(secret)"
    if value == DEFAULT_POLICY_FILE:
        return "the bundled `bot/policy.yaml`"
    if value == "":
        return "(empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"`{value}`"


def settings_table() -> str:
    """A markdown table of every setting: environment name, default, description."""
    rows = ["| variable | default | what it is |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name.upper()}` | {_default(name)} | {description} |")
    return "\n".join(rows) + "\n"


def embed(document: str) -> str:
    """`document` with the text between the settings markers replaced by the table."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the document has no {BEGIN} ... {END} section")
    return document[: start + len(BEGIN)] + "\n" + settings_table() + document[end:]


def main(argv: list[str] | None = None) -> int:
    """Print the table, or write it into a document's settings section."""
    parser = argparse.ArgumentParser(prog="python -m bot.settings_doc", description=__doc__)
    parser.add_argument("--write", metavar="FILE", help="update the table inside FILE")
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(settings_table())
        return 0
    path = Path(args.write)
    path.write_text(embed(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated the settings table in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
