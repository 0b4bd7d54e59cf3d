"""Waiting in tests: for a condition, never for a fixed time.

A loaded machine (eight test runs on two cores) can take many times longer
than an idle one, so a test that sleeps a fixed time, or gives up after a
few seconds, fails for no fault of the code. `eventually` polls a condition
until it holds and allows `GENEROUS` seconds: only a failing test ever waits
that long, a passing one goes on the moment the condition holds.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

# Seconds to wait for a condition before the test fails.
GENEROUS = 120.0

Condition = Callable[[], bool | Awaitable[bool]]


async def eventually(condition: Condition, *, seconds: float = GENEROUS, every: float = 0.05,
                     what: str = "the condition holds") -> None:
    """Return once `condition()` (a function or a coroutine function) is true;
    fail the test after `seconds` saying `what` did not happen."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting until {what}")
        await asyncio.sleep(every)


def eventually_sync(condition: Callable[[], bool], *, seconds: float = GENEROUS,
                    every: float = 0.1, what: str = "the condition holds") -> None:
    """`eventually` for a test without an event loop (a subprocess, a browser)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting until {what}")
        time.sleep(every)
