"""R6 repeat detection: the same vehicle complaining again about the same problem.

Another problem of the same vehicle is not a repeat: it is linked to the earlier
ticket as related (both tickets show the link) and classified on its own, so
brand division management and legal are not warned for it (R7-R9)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.domain.policy import Policy


@dataclass(frozen=True)
class EarlierComplaint:
    """What repeat detection needs to know of an earlier ticket."""

    number: int
    vin: str
    plate: str
    description: str
    dispatched_at: datetime
    is_open: bool


def normalise_plate(plate: str) -> str:
    """Plates compare without spaces, dots and dashes, upper-cased."""
    return "".join(ch for ch in plate.upper() if ch.isalnum())


def _bigrams(text: str) -> set[str]:
    chars = [ch for ch in text.lower() if ch.isalnum()]
    return {a + b for a, b in zip(chars, chars[1:], strict=False)}


def similarity(a: str, b: str) -> float:
    """Share of the shorter text's character bigrams that the other text has too.

    Character bigrams work for Chinese without a word segmenter: 发动机异响 and
    发动机又有异响 share most of theirs."""
    grams_a, grams_b = _bigrams(a), _bigrams(b)
    if not grams_a or not grams_b:
        return 0.0
    return len(grams_a & grams_b) / min(len(grams_a), len(grams_b))


def same_vehicle(vin: str, plate: str, earlier: EarlierComplaint) -> bool:
    """VIN decides when both tickets have one; otherwise the plate does."""
    if vin and earlier.vin:
        return vin.upper() == earlier.vin.upper()
    return bool(plate) and normalise_plate(plate) == normalise_plate(earlier.plate)


def _recent_same_vehicle(
    vin: str, plate: str, earlier: Iterable[EarlierComplaint], policy: Policy, now: datetime
) -> list[EarlierComplaint]:
    return [
        e for e in earlier
        if now - e.dispatched_at <= policy.repeat.lookback and same_vehicle(vin, plate, e)
    ]


def find_repeat(
    *,
    vin: str,
    plate: str,
    description: str,
    earlier: Iterable[EarlierComplaint],
    policy: Policy,
    now: datetime,
) -> EarlierComplaint | None:
    """The most recent earlier complaint this one repeats, if any: the same
    vehicle about the same problem (similar text). With the policy's
    `open_ticket_is_repeat`, any open ticket of the vehicle counts too."""
    rule = policy.repeat
    matches = [
        e
        for e in _recent_same_vehicle(vin, plate, earlier, policy, now)
        if (rule.open_ticket_is_repeat and e.is_open)
        or similarity(description, e.description) >= rule.min_similarity
    ]
    return max(matches, key=lambda e: (e.dispatched_at, e.number), default=None)


def find_related(
    *,
    vin: str,
    plate: str,
    earlier: Iterable[EarlierComplaint],
    repeat: EarlierComplaint | None,
    policy: Policy,
    now: datetime,
) -> EarlierComplaint | None:
    """For a complaint that repeats nothing: the earlier ticket of the same
    vehicle it is linked to as related, the most recent open one first, else
    the most recent closed one within the lookback."""
    if repeat is not None:
        return None
    found = _recent_same_vehicle(vin, plate, earlier, policy, now)
    return max(found, key=lambda e: (e.is_open, e.dispatched_at, e.number), default=None)
