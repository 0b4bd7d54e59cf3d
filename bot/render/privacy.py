"""Masking of the customer's details wherever a group, a card or a log could show them."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def mask_phone(phone: str) -> str:
    """138****5678: the first three and last four digits stay."""
    digits = phone.lstrip("+")
    if len(digits) < 8:
        return "*" * len(digits)
    return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"


def mask_vin(vin: str) -> str:
    """LFV*********2345: the maker code and the last four characters stay."""
    if len(vin) < 8:
        return "*" * len(vin)
    return f"{vin[:3]}{'*' * (len(vin) - 7)}{vin[-4:]}"


def local_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """A stored UTC time as people read it: 2026-03-02 09:00 in the configured zone."""
    if moment is None:
        return "—"
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")
