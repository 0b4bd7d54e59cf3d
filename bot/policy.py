"""The process policy: one YAML file, parsed into a frozen, validated object.

The policy's identity is the hash of its parsed content, so two files that say
the same thing are the same policy, and any edit makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from bot.domain.enums import Category, Channel, Flag, OwnerLevel, Role

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhd])\s*$")
_UNIT = {"m": "minutes", "h": "hours", "d": "days"}


class PolicyError(Exception):
    """The policy file is unreadable or invalid; the message names the field."""


def parse_duration(value: Any) -> timedelta:
    """Turn '30m', '2h' or '3d' into a timedelta."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (write for example 30m, 2h or 3d)")
    return timedelta(**{_UNIT[match.group(2)]: float(match.group(1))})


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration, used when a policy is stored."""
    minutes = int(value.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GeneralClocks(_Frozen):
    response: Duration
    first_solution: Duration
    solution_email: Duration
    followup: Duration
    resolution: Duration


class OwnerClocks(_Frozen):
    response: Duration
    solution_email: Duration


class Clocks(_Frozen):
    general: GeneralClocks
    escalated: OwnerClocks
    important: OwnerClocks
    callback: Duration


class Unreachable(_Frozen):
    attempts: int = Field(ge=1)
    distinct_slots: int = Field(ge=1)
    window: Duration
    slots: dict[str, tuple[int, int]]


class Classification(_Frozen):
    escalated_channels: frozenset[Channel]
    important_channels: frozenset[Channel]
    escalated_flags: frozenset[Flag]
    important_flags: frozenset[Flag]
    major_channels: frozenset[Channel]
    major_flags: frozenset[Flag]
    legal_keywords: tuple[str, ...]


class RepeatRule(_Frozen):
    lookback: Duration
    min_similarity: float = Field(ge=0, le=1)
    open_ticket_is_repeat: bool


class StagedClosure(_Frozen):
    approvers: tuple[Role, ...] = Field(min_length=1)
    decision_reminder: Duration


class CompensationBand(_Frozen):
    up_to: Decimal | None
    role: Role


class Policy(_Frozen):
    """Every configurable number of the process (see bot/policy.yaml)."""

    version: str
    clocks: Clocks
    dispute_window: Duration
    followup_escalate_above: int = Field(ge=0)
    unreachable: Unreachable
    classification: Classification
    repeat: RepeatRule
    owner_level: dict[Category, OwnerLevel]
    staged_closure: StagedClosure
    compensation: tuple[CompensationBand, ...] = Field(min_length=1)
    major_warning: Duration

    def document(self) -> dict[str, Any]:
        """The policy as plain JSON-able data, the form in which it is stored."""

        def plain(value: Any) -> Any:
            if isinstance(value, timedelta):
                return format_duration(value)
            if isinstance(value, dict):
                return {str(k): plain(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [plain(v) for v in value]
            if isinstance(value, frozenset | set):
                return sorted(plain(v) for v in value)
            if isinstance(value, Decimal):
                return str(value)
            return value

        return plain(self.model_dump(mode="python"))

    @property
    def digest(self) -> str:
        """A short hash of the content: the key under which the policy is stored."""
        canonical = json.dumps(self.document(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def policy_from_document(document: dict[str, Any]) -> Policy:
    """Validate a policy document (parsed YAML or a stored copy)."""
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise PolicyError(f"invalid policy: {problems}") from None


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc}") from None
    if not isinstance(document, dict):
        raise PolicyError(f"policy file {path} must hold a mapping")
    return policy_from_document(document)
