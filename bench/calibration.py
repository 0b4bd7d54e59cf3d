"""The calibration line every bench prints first.

A fixed pure-Python loop, timed here: it says how fast this machine (and
whatever else runs on it now) executes Python, so a reader can compare the
absolute figures of runs on other machines. The ratios each bench prints are
what carry between machines; this line tells how far the absolute ones may.
"""

from __future__ import annotations

import time

_ROUNDS = 2_000_000


def _loop() -> int:
    total = 0
    for i in range(_ROUNDS):
        total += i * i % 7
    return total


def calibration_ms() -> float:
    """The fastest of three runs of the loop, in milliseconds."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        _loop()
        best = min(best, time.perf_counter() - started)
    return 1000 * best


def print_calibration() -> None:
    """Print `calibration_loop_ms <value> ms` (2,000,000 rounds of `total += i*i % 7`)."""
    print(f"calibration_loop_ms {calibration_ms():.0f} ms", flush=True)
