"""The IMU of a robot with no firmware of its own: a small interface and a BNO055 on a UART.

A BNO055's UART protocol has no checksum and no tag, so every reading is checked before it can
reach the policy (length, quaternion norm, full-scale readings: simreal.hardware.bno055.problem),
with the same flush / quiet period / bounded retry discipline as the servo bus.
"""
from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

from simreal.deploy.driver import HandshakeError, LinkTimeout
from simreal.deploy.servo_link import BusLinkCounters, RawPort
from simreal.deploy.transport import open_port
from simreal.hardware import bno055


@runtime_checkable
class ImuSource(Protocol):
    """What BusDriver reads the body's orientation, rate and acceleration from."""
    counters: BusLinkCounters

    def open(self) -> None: ...
    def close(self) -> None: ...
    def check(self) -> None: ...                # HandshakeError unless it is there and fusing
    def read(self) -> bno055.Sample: ...        # LinkTimeout unless a plausible sample arrived


class Bno055Link:
    """A BNO055 on its own UART: one 32-byte read per cycle, checked (the protocol has no checksum)."""

    def __init__(self, url: str, baudrate: int, *, timeout_s: float, opener=open_port, clock=time.monotonic,
                 retries: int = 1):
        self.url, self.timeout_s, self.retries, self.clock = url, timeout_s, retries, clock
        self.counters = BusLinkCounters()
        self.raw = RawPort(url, baudrate, opener=opener, clock=clock, counters=self.counters)
        self.byte_s = 10.0 / baudrate

    def open(self) -> None:
        self.raw.open()

    def close(self) -> None:
        self.raw.close()

    def check(self) -> None:
        try:
            chip = self._read(bno055.CHIP_ID_REG, 1, timeout_s=0.05)[0]
            mode = self._read(bno055.OPR_MODE_REG, 1, timeout_s=0.05)[0]
        except LinkTimeout as exc:
            raise HandshakeError(f"IMU {self.url}: {exc}") from exc
        if chip != bno055.CHIP_ID:
            raise HandshakeError(f"IMU {self.url}: chip id 0x{chip:02X}, a BNO055 says 0x{bno055.CHIP_ID:02X}")
        if mode != bno055.MODE_NDOF:
            raise HandshakeError(f"IMU {self.url}: operating mode 0x{mode:02X}, not NDOF fusion (0x0C)")

    def read(self) -> bno055.Sample:
        return bno055.decode_data(self._read(bno055.DATA_START, bno055.DATA_LEN, check=True))

    def _read(self, reg: int, n: int, *, timeout_s: float | None = None, check: bool = False) -> bytes:
        timeout = timeout_s or self.timeout_s
        why = ""
        for attempt in range(1 + self.retries):
            if attempt:
                self.counters.retries += 1
                self.raw.quiet((n + 2) * self.byte_s + 0.0005, self.clock() + timeout)
            self.raw.flush()
            self.counters.requests += 1
            self.raw.write(bno055.read_request(reg, n))
            deadline = self.clock() + timeout
            buf = bytearray()
            while True:
                data = self.raw.read(deadline)
                if data is None:
                    why = f"{len(buf)} of {n + 2} bytes"
                    break
                buf += data
                if buf[:1] == bytes([bno055.STATUS_REPLY]) and len(buf) >= 2:
                    why = f"the IMU answered status 0x{buf[1]:02X}"
                    break
                if buf[:1] not in (b"", bytes([bno055.READ_REPLY])):
                    why = f"a reply starting 0x{buf[0]:02X}"
                    break
                if len(buf) >= n + 2:
                    break
            if len(buf) == n + 2 and buf[0] == bno055.READ_REPLY and buf[1] == n:
                data = bytes(buf[2:])
                problem = bno055.problem(bno055.decode_data(data)) if check else ""
                if not problem:
                    self.counters.transactions += 1
                    return data
                self.counters.implausible += 1
                why = problem
            self.counters.timeouts += 1
        self.counters.failed += 1
        raise LinkTimeout(f"IMU read on {self.url} failed after {1 + self.retries} attempt(s): {why}")
