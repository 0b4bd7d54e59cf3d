"""The calibration line at the top of each bench's output: a fixed pure-Python
loop, timed, so a reader can compare machines (and a busy machine with an
idle one) before comparing any other figure."""

from __future__ import annotations

import time

LOOPS = 5_000_000


def calibration_line() -> float:
    """Time the loop, print `calibration_loop_seconds <s> s`, return the seconds."""
    started = time.perf_counter()
    total = 0
    for i in range(LOOPS):
        total = (total + i * i) % 1_000_003
    seconds = time.perf_counter() - started
    print(f"calibration_loop_seconds {seconds:.3f} s ({LOOPS:,} iterations of a fixed "
          f"pure-Python loop; checksum {total})", flush=True)
    return seconds
