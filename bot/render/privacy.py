"""Masking of the customer's details wherever a group, a card or a log could show them.

People write a phone number or a VIN into free text however their input method
gives it: full-width digits and letters (１３８, ＬＦＶ), and dots, dashes,
spaces, parentheses or underscores between the groups. The patterns here match
the customer's number and VIN in any of those forms."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from zoneinfo import ZoneInfo

# Separators people put between digit groups, half- and full-width.
_SEPARATOR_CHARS = r"\s\-._()·（）＿－．・—"
_SEPARATORS = re.compile(f"[{_SEPARATOR_CHARS}]+")
_GAP = f"[{_SEPARATOR_CHARS}]*"
_FULL_WIDTH_OFFSET = 0xFEE0  # '１' is '1' + this, 'Ａ' is 'A' + this


def plain(text: str) -> str:
    """Text with full-width forms made half-width (NFKC) and separators dropped."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", text))


def _either_width(ch: str) -> str:
    """A character class for `ch` in half or full width, either case for a letter."""
    forms = {ch, ch.upper(), ch.lower()}
    forms |= {chr(ord(f) + _FULL_WIDTH_OFFSET) for f in list(forms) if "!" <= f <= "~"}
    return "[" + "".join(re.escape(f) for f in sorted(forms)) + "]"


def _spaced(chars: str) -> str:
    return _GAP.join(_either_width(ch) for ch in chars)


def _national(phone: str) -> str:
    """The digits of a phone without + and, for a mainland mobile, without 86."""
    digits = plain(phone).lstrip("+")
    if len(digits) == 13 and digits.startswith("861"):
        return digits[2:]
    return digits


def phone_pattern(phone: str) -> re.Pattern[str] | None:
    """The customer's phone as it may appear in text (with or without +86);
    None for a number too short to find safely."""
    digits = _national(phone)
    if len(digits) < 5:
        return None
    prefix = f"(?:[+＋]?{_GAP}{_spaced('86')}{_GAP})?"
    opening = "[(（]?"  # (139)1234-5678: the parenthesis goes with the number
    return re.compile(opening + prefix + opening + _spaced(digits))


def vin_pattern(vin: str) -> re.Pattern[str] | None:
    """The VIN as it may appear in text: any width, any case, separated or not."""
    chars = plain(vin)
    return re.compile(_spaced(chars)) if len(chars) >= 8 else None


def mask_phone(phone: str) -> str:
    """138****5678: the first three and last four digits stay."""
    digits = _national(phone)
    if len(digits) < 8:
        return "*" * len(digits)
    return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"


def mask_vin(vin: str) -> str:
    """LFV*********2345: the maker code and the last four characters stay."""
    vin = plain(vin).upper()
    if len(vin) < 8:
        return "*" * len(vin)
    return f"{vin[:3]}{'*' * (len(vin) - 7)}{vin[-4:]}"


def local_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """A stored UTC time as people read it: 2026-03-02 09:00 in the configured zone."""
    if moment is None:
        return "—"
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")
