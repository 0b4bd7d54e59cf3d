"""`complaintbot directory import FILE.yaml`: load regions, dealers, staff and
groups. Rows are matched by code, userid or chatid and updated in place, so a
second run of the same file changes nothing. Errors name the file's line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tortoise.transactions import in_transaction

from bot.domain.enums import Role
from models import Dealer, GroupChat, Region, Staff

_DEALER_ROLES = {Role.DEALER_STAFF, Role.DEALER_MANAGER, Role.DEALER_GM}
_REGION_ROLES = {Role.REGION_STAFF}
_REGION_OR_HQ_ROLES = {Role.SECOND_LEVEL_MANAGER, Role.SENIOR_MANAGER}


class DirectoryError(Exception):
    """The file cannot be imported; the message names the line."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class RegionEntry(_Entry):
    code: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=100)


class DealerEntry(_Entry):
    code: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=100)
    region: str


class StaffEntry(_Entry):
    userid: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=64)
    role: Role
    email: str = Field("", max_length=254)
    mobile: str = Field("", max_length=32)
    dealer: str | None = None
    region: str | None = None
    active: bool = True

    @model_validator(mode="after")
    def _placement(self) -> StaffEntry:
        if self.role in _DEALER_ROLES and not self.dealer:
            raise ValueError(f"role {self.role.value} needs a dealer")
        if self.role in _REGION_ROLES and not self.region:
            raise ValueError(f"role {self.role.value} needs a region")
        if self.role not in _DEALER_ROLES and self.dealer:
            raise ValueError(f"role {self.role.value} cannot belong to a dealer")
        if self.role not in _REGION_ROLES | _REGION_OR_HQ_ROLES and self.region:
            raise ValueError(f"role {self.role.value} cannot belong to a region")
        if self.email and "@" not in self.email:
            raise ValueError(f"email {self.email!r} is not an e-mail address")
        return self


class GroupEntry(_Entry):
    chatid: str = Field(min_length=1, max_length=128)
    name: str = Field("", max_length=100)
    kind: Literal["dealer", "region", "hq", "call_centre"]
    dealer: str | None = None
    region: str | None = None
    webhook_key: str = Field("", max_length=128)
    app_chat_id: str = Field("", max_length=64)

    @model_validator(mode="after")
    def _binding(self) -> GroupEntry:
        if self.kind == "dealer" and not self.dealer:
            raise ValueError("a dealer group needs dealer: CODE")
        if self.kind == "region" and not self.region:
            raise ValueError("a region group needs region: CODE")
        if self.kind in ("hq", "call_centre") and (self.dealer or self.region):
            raise ValueError(f"a {self.kind} group has no dealer or region")
        return self


_SECTIONS: dict[str, type[_Entry]] = {
    "regions": RegionEntry,
    "dealers": DealerEntry,
    "staff": StaffEntry,
    "groups": GroupEntry,
}


@dataclass
class ImportSummary:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)

    def count(self, section: str, created: bool, changed: bool) -> None:
        target = self.created if created else self.updated if changed else None
        if target is not None:
            target[section] = target.get(section, 0) + 1

    def __str__(self) -> str:
        if not self.created and not self.updated:
            return "directory unchanged"
        parts = [f"{n} {s} created" for s, n in self.created.items()]
        parts += [f"{n} {s} updated" for s, n in self.updated.items()]
        return ", ".join(parts)


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers each mapping's line."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def parse_directory(path: Path) -> dict[str, list[tuple[int, _Entry]]]:
    """Read and validate the file; every entry comes with its line number."""
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.load(text, Loader=_LineLoader)
    except OSError as exc:
        raise DirectoryError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{mark.line + 1}:" if mark else ""
        problem = ", ".join(p for p in (exc.context, exc.problem) if p)
        raise DirectoryError(f"{path}:{where} not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise DirectoryError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise DirectoryError(f"{path}: expected a mapping with regions, dealers, staff, groups")
    unknown = set(document) - set(_SECTIONS) - {"__line__"}
    if unknown:
        lines = _top_level_key_lines(text)
        raise DirectoryError("\n".join(
            f"{path}:{lines.get(str(name), 1)}: unknown section {name!r} "
            f"(expected {', '.join(_SECTIONS)})"
            for name in sorted(unknown, key=str)
        ))
    parsed: dict[str, list[tuple[int, _Entry]]] = {}
    errors: list[str] = []
    for section, model in _SECTIONS.items():
        entries = document.get(section) or []
        if not isinstance(entries, list):
            errors.append(f"{path}:{document['__line__']}: {section} must be a list")
            continue
        parsed[section] = []
        for item in entries:
            line = item.pop("__line__", "?") if isinstance(item, dict) else "?"
            try:
                parsed[section].append((line, model.model_validate(item)))
            except ValidationError as exc:
                for err in exc.errors():
                    where = ".".join(str(p) for p in err["loc"])
                    label = f"{where}: " if where else ""
                    errors.append(f"{path}:{line}: {section}: {label}{err['msg']}")
    _check_unique(path, parsed, errors)
    if errors:
        raise DirectoryError("\n".join(errors))
    return parsed


def _top_level_key_lines(text: str) -> dict[str, int]:
    """The line of each top-level key of a YAML mapping."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(key.value): key.start_mark.line + 1 for key, _ in node.value}


def _check_unique(path: Path, parsed: dict[str, list[tuple[int, Any]]], errors: list[str]) -> None:
    """Each code, userid and chatid appears once in the file. (Whether a named
    dealer or region exists, here or in the database, is checked at import.)"""
    for section, key in (("regions", "code"), ("dealers", "code"), ("staff", "userid"),
                         ("groups", "chatid")):
        seen: dict[str, int] = {}
        for line, entry in parsed.get(section, []):
            value = getattr(entry, key)
            if value in seen:
                errors.append(
                    f"{path}:{line}: {section}: {key} {value!r} already on line {seen[value]}"
                )
            seen[value] = line


async def import_directory(path: Path) -> ImportSummary:
    """Upsert the file's contents in one transaction; nothing is written on error."""
    parsed = parse_directory(path)
    summary = ImportSummary()
    async with in_transaction():
        regions = {r.code: r for r in await Region.all()}
        for _line, entry in parsed["regions"]:
            regions[entry.code] = await _upsert(summary, "regions", Region, {"code": entry.code},
                                                {"name": entry.name})
        dealers = {d.code: d for d in await Dealer.all()}
        for line, entry in parsed["dealers"]:
            region = _lookup(path, line, "region", entry.region, regions)
            dealers[entry.code] = await _upsert(summary, "dealers", Dealer, {"code": entry.code},
                                                {"name": entry.name, "region_id": region.id})
        for line, entry in parsed["staff"]:
            dealer = _lookup(path, line, "dealer", entry.dealer, dealers) if entry.dealer else None
            region = _lookup(path, line, "region", entry.region, regions) if entry.region else None
            await _upsert(summary, "staff", Staff, {"userid": entry.userid}, {
                "name": entry.name, "role": entry.role, "email": entry.email,
                "mobile": entry.mobile, "active": entry.active,
                "dealer_id": dealer.id if dealer else None,
                "region_id": region.id if region else None,
            })
        for line, entry in parsed["groups"]:
            dealer = _lookup(path, line, "dealer", entry.dealer, dealers) if entry.dealer else None
            region = _lookup(path, line, "region", entry.region, regions) if entry.region else None
            await _upsert(summary, "groups", GroupChat, {"chatid": entry.chatid}, {
                "name": entry.name, "kind": entry.kind, "webhook_key": entry.webhook_key,
                "app_chat_id": entry.app_chat_id,
                "dealer_id": dealer.id if dealer else None,
                "region_id": region.id if region else None,
            })
    return summary


def _lookup(path: Path, line: int, what: str, code: str, known: dict[str, Any]) -> Any:
    if code not in known:
        raise DirectoryError(f"{path}:{line}: unknown {what} {code!r}")
    return known[code]


async def _upsert(summary: ImportSummary, section: str, model: Any, key: dict[str, Any],
                  values: dict[str, Any]) -> Any:
    row = await model.get_or_none(**key)
    if row is None:
        row = await model.create(**key, **values)
        summary.count(section, created=True, changed=True)
        return row
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    if changed:
        row.update_from_dict(changed)
        await row.save(update_fields=list(changed))
        summary.count(section, created=False, changed=True)
    return row
