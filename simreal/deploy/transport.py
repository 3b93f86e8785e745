"""A fault-injecting wrapper around any pyserial port (docs/faults.md, layer L2), for tests and drills.

    driver = SerialDriver(url, opener=faulty_opener(FaultPlan(seed=3, bit_error_rate=1e-4)))

Everything is drawn from one seeded generator and counted in `FaultyPort.injected`, so a run
can be replayed and its fault counts compared with what the driver detected. Faults act on the
host's side of the link: bytes it receives are damaged, padded with garbage or held back, and
requests it writes may vanish.
"""
from __future__ import annotations

import collections
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from simreal.deploy.driver import LinkConfig, open_port, write_all


@dataclass(frozen=True)
class FaultPlan:
    seed: int = 0
    bit_error_rate: float = 0.0    # probability that any received bit is flipped
    garbage_rate: float = 0.0      # probability that a received chunk is preceded by a garbage burst
    garbage_max: int = 64          # burst length is uniform in 1..garbage_max (0x00 included)
    drop_write_rate: float = 0.0   # probability that a written request never reaches the device
    latency_s: float = 0.0         # received bytes become readable only at multiples of this (USB latency timer)

    def __post_init__(self) -> None:
        for name in ("bit_error_rate", "garbage_rate", "drop_write_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"FaultPlan.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.garbage_max < 1 or self.latency_s < 0:
            raise ValueError("FaultPlan.garbage_max must be >= 1 and latency_s >= 0")


class FaultyPort:
    """Looks like a pyserial port to the driver: in_waiting, timeout, read, write, reset_input_buffer, close."""

    def __init__(self, port: Any, plan: FaultPlan):
        self._port = port
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._readable = bytearray()
        self._held: collections.deque[tuple[float, bytes]] = collections.deque()   # (readable at, bytes)
        self.timeout: float | None = getattr(port, "timeout", None)
        self.injected: collections.Counter = collections.Counter()

    # ---- the pyserial surface the driver uses

    @property
    def in_waiting(self) -> int:
        self._pump(0.0)
        return len(self._readable)

    def read(self, size: int = 1) -> bytes:
        """Up to `size` bytes, waiting at most `timeout` for the first one (short reads are allowed)."""
        deadline = time.monotonic() + (self.timeout if self.timeout is not None else math.inf)
        while not self._readable:
            now = time.monotonic()
            if now >= deadline:
                return b""
            wait = deadline - now
            if self._held:
                wait = min(wait, max(self._held[0][0] - now, 0.0))
            self._pump(wait)
        out = bytes(self._readable[:size])
        del self._readable[:size]
        return out

    def write(self, data: bytes) -> int:
        if self._rng.random() < self.plan.drop_write_rate:
            self.injected["writes_dropped"] += 1
            return len(data)
        write_all(self._port, data, self._port.write_timeout)
        return len(data)

    def reset_input_buffer(self) -> None:
        # Like tcflush: what the OS holds is gone; bytes still inside the adapter (held) arrive later.
        self._port.reset_input_buffer()
        self._readable.clear()

    def close(self) -> None:
        self._port.close()

    # ---- fault injection

    def _pump(self, wait: float) -> None:
        """Take what the real port has (waiting up to `wait` for it), damage it, and release what is due."""
        port = self._port
        n = port.in_waiting
        if not n and wait > 0:
            port.timeout = wait
            data = port.read(1)
            n = port.in_waiting
            data += port.read(n) if n else b""
        else:
            data = port.read(n) if n else b""
        now = time.monotonic()
        if data:
            data = self._damage(data)
            lat = self.plan.latency_s
            self._held.append((math.ceil(now / lat) * lat if lat else now, data))
        while self._held and self._held[0][0] <= now:
            self._readable += self._held.popleft()[1]

    def _damage(self, data: bytes) -> bytes:
        plan, rng = self.plan, self._rng
        out = bytearray(data)
        if plan.bit_error_rate:
            # Flip positions drawn as geometric gaps: cheap even at low rates over long streams.
            pos = self._gap(len(out) * 8)
            while pos is not None:
                out[pos // 8] ^= 1 << (pos % 8)
                self.injected["bit_flips"] += 1
                nxt = self._gap(len(out) * 8 - pos - 1)
                pos = None if nxt is None else pos + 1 + nxt
        if rng.random() < plan.garbage_rate:
            junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, plan.garbage_max)))
            self.injected["garbage_bursts"] += 1
            self.injected["garbage_bytes"] += len(junk)
            out[:0] = junk
        return bytes(out)

    def _gap(self, span: int) -> int | None:
        """Bits until the next flip within `span` bits, or None."""
        p = self.plan.bit_error_rate
        if p <= 0 or span <= 0:
            return None
        gap = 0 if p >= 1 else int(math.log(1.0 - self._rng.random()) / math.log(1.0 - p))
        return gap if gap < span else None


def faulty_opener(plan: FaultPlan) -> Callable[[str, LinkConfig], FaultyPort]:
    """An `opener` for SerialDriver that wraps the real port in a FaultyPort."""
    def opener(url: str, config: LinkConfig) -> FaultyPort:
        return FaultyPort(open_port(url, config), plan)
    return opener
