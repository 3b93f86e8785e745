"""Clocks for the control loop: the real one, and a fake one that makes timing tests exact.

The runtime only ever asks two things of a clock: what time it is, and to wait until an
absolute instant. Scheduling against absolute instants (next = start + k * period) is what
keeps a loop at its rate; sleeping for dt after the work drifts by the work's duration.
"""
from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep_until(self, t: float) -> None: ...


class MonotonicClock:
    """perf_counter time; sleeps most of the wait, then spins the last `spin_s` for precision.

    time.sleep() overshoots by 50-100 us on an idle Linux box and by milliseconds on a loaded
    one; spinning the last fraction of a millisecond buys back most of that for ~2% of a CPU
    at 50 Hz. spin_s=0 gives a pure sleep (kinder to a shared machine).
    """

    def __init__(self, spin_s: float = 0.0003):
        self.spin_s = spin_s

    def now(self) -> float:
        return time.perf_counter()

    def sleep_until(self, t: float) -> None:
        remaining = t - time.perf_counter()
        if remaining > self.spin_s:
            time.sleep(remaining - self.spin_s)
        while time.perf_counter() < t:
            pass


class FakeClock:
    """Deterministic time for tests: sleeping jumps to the instant; work takes what advance() says."""

    def __init__(self, start: float = 0.0):
        self.t = float(start)
        self.sleeps = 0

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.sleeps += 1
        if t > self.t:
            self.t = float(t)

    def advance(self, dt: float) -> None:
        """Pretend some work took dt seconds (a slow inference, a stalled read)."""
        self.t += float(dt)
