"""Transactions on a bus with no request tag (Feetech STS, Dynamixel 2.0, the BNO055's UART).

A reply names only the device that sent it, so a late reply to an earlier request looks exactly
like the awaited one. Every transaction therefore:
  1. after a failed attempt, waits out a quiet period (no byte for `quiet_s`, within the budget):
     a late reply still on the wire arrives and is thrown away instead of answering the retry;
  2. discards unread input, then writes the request;
  3. reads until every awaited status packet has arrived, in order (a sync read's servos answer
     in the listed order) or the attempt times out; a packet from another servo, a corrupt one or
     a reply the caller's `check` finds implausible fails the attempt;
  4. retries a bounded number of times inside the budget, then raises LinkTimeout.
A failed group read fails whole: nothing is zero- or stale-filled (faults.md D3, B1-B3).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import serial

from simreal.deploy.driver import LinkConfig, LinkLost, LinkTimeout, Seen, WriteTimeout
from simreal.deploy.port import write_all
from simreal.deploy.transport import open_port
from simreal.hardware.packets import DecodeStats, Packet

_IO_ERRORS = (serial.SerialException, OSError)

# check(packets) -> "" when the replies are plausible, else why not
Check = Callable[[list[Packet]], str]


@dataclass
class BusLinkCounters:
    transactions: int = 0
    requests: int = 0
    retries: int = 0
    timeouts: int = 0            # attempts that ended without every awaited reply
    failed: int = 0              # transactions that raised LinkTimeout
    stale_replies: int = 0       # a packet from a servo not awaited at that point: dropped
    implausible: int = 0         # checksum-valid replies whose values cannot be true: dropped
    write_timeouts: int = 0
    link_lost: int = 0
    bytes_flushed: int = 0
    quiet_waits: int = 0
    decoder: DecodeStats = field(default_factory=DecodeStats)

    def as_dict(self) -> dict[str, int]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "decoder"}
        out.update({f"decoder_{k}": v for k, v in dataclasses.asdict(self.decoder).items()})
        return out


class RawPort:
    """A pyserial port with deadline reads, flush and quiet-period waits; errors become LinkLost."""

    def __init__(self, url: str, baudrate: int, *, opener=open_port, clock=time.monotonic, counters):
        self.url, self.clock, self.counters = url, clock, counters
        self.config = LinkConfig(baudrate=baudrate)
        self._opener = opener
        self.port: Any = None

    def open(self) -> None:
        if self.port is None:
            self.port = self._opener(self.url, self.config)

    def close(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            try:
                port.close()
            except Exception:
                pass

    def flush(self) -> None:
        try:
            n = self.port.in_waiting
            if n:
                self.counters.bytes_flushed += len(self.port.read(n))
            self.port.reset_input_buffer()
        except _IO_ERRORS as exc:
            self.lost(exc)

    def write(self, data: bytes) -> None:
        try:
            write_all(self.port, data, self.config.write_timeout_s)
        except serial.SerialTimeoutException as exc:
            self.counters.write_timeouts += 1
            raise WriteTimeout(f"write to {self.url} timed out: the device is not reading") from exc
        except _IO_ERRORS as exc:
            self.lost(exc)

    def read(self, deadline: float) -> bytes | None:
        """What has arrived, waiting at most until the deadline; None once it has passed."""
        try:
            n = self.port.in_waiting
            if n:
                return self.port.read(n)
            remaining = deadline - self.clock()
            if remaining <= 0:
                return None
            self.port.timeout = remaining
            data = self.port.read(1)
            if not data:
                return None if self.clock() >= deadline else b""
            n = self.port.in_waiting
            return data + self.port.read(n) if n else data
        except _IO_ERRORS as exc:
            self.lost(exc)

    def quiet(self, quiet_s: float, deadline: float) -> None:
        """Read and discard until nothing has arrived for quiet_s (or the deadline)."""
        self.counters.quiet_waits += 1
        while True:
            until = min(self.clock() + quiet_s, deadline)
            data = self.read(until)
            if data:
                self.counters.bytes_flushed += len(data)
                continue
            if data is None or self.clock() >= deadline:
                return

    def lost(self, exc: BaseException) -> None:
        self.counters.link_lost += 1
        raise LinkLost(f"link to {self.url} lost: {exc}") from exc


class ServoLink:
    """Request/response on one servo bus. `codec` is simreal.hardware.feetech or .dynamixel."""

    def __init__(self, url: str, codec, *, baudrate: int, timeout_s: float, retries: int,
                 reply_gap_s: float = 0.0, opener=open_port, clock=time.monotonic):
        self.url, self.codec = url, codec
        self.timeout_s, self.retries = timeout_s, retries
        self.counters = BusLinkCounters()
        self.raw = RawPort(url, baudrate, opener=opener, clock=clock, counters=self.counters)
        self.clock = clock
        self.byte_s = 10.0 / baudrate
        self.reply_gap_s = reply_gap_s               # return delay: silence before each status packet
        self._decoder = codec.Decoder(status=True)
        self.counters.decoder = self._decoder.stats
        self._dirty = False                          # the last attempt failed: wait for quiet first

    def open(self) -> None:
        self.raw.open()

    def close(self) -> None:
        self.raw.close()

    def send(self, packet: bytes) -> None:
        """A packet that earns no reply (broadcast, sync write)."""
        self.counters.requests += 1
        self.raw.write(packet)

    def quiet_s(self, reply_bytes: int) -> float:
        return reply_bytes * self.byte_s + self.reply_gap_s + 0.0005

    def transact(self, packet: bytes, ids: Sequence[int], *, reply_bytes: int, what: str,
                 check: Check | None = None, timeout_s: float | None = None,
                 retries: int | None = None) -> list[Packet]:
        """Send `packet`, return one status packet from each of `ids`, in that order. An attempt
        waits at least twice the wire time of the request and the replies (plus return delays)."""
        wire = (len(packet) + reply_bytes) * self.byte_s + len(ids) * self.reply_gap_s
        timeout = max(timeout_s or self.timeout_s, 2 * wire + 0.0005)
        tries = 1 + (self.retries if retries is None else retries)
        budget_end = self.clock() + timeout * tries
        seen = Seen()
        for attempt in range(tries):
            if attempt:
                self.counters.retries += 1
            if self._dirty:
                self.raw.quiet(self.quiet_s(reply_bytes), budget_end)
            self.raw.flush()
            self._decoder.reset()
            self.counters.requests += 1
            self.raw.write(packet)
            got = self._await(list(ids), min(self.clock() + timeout, budget_end), seen, check)
            if got is not None:
                self._dirty = False
                self.counters.transactions += 1
                return got
            self._dirty = True
            self.counters.timeouts += 1
            if self.clock() >= budget_end:
                break
        self.counters.failed += 1
        raise LinkTimeout(f"{what} on {self.url}: no complete, plausible reply after {attempt + 1} "
                          f"attempt(s) of {timeout * 1000:.1f} ms ({seen.summary()})", seen)

    def _await(self, ids: list[int], deadline: float, seen: Seen, check: Check | None) -> list[Packet] | None:
        got: list[Packet] = []
        errors_before = self._decoder.stats.errors
        while len(got) < len(ids):
            data = self.raw.read(deadline)
            if data is None:
                missing = ids[len(got):]
                seen.note("missing", f"no reply from servo(s) {missing}")
                return None
            if not data:
                continue
            seen.bytes_received += len(data)
            if len(seen.first_bytes) < 16:
                seen.first_bytes += data[:16 - len(seen.first_bytes)]
            for pkt in self._decoder.feed(data):
                want = ids[len(got)]
                if pkt.servo_id != want:
                    self.counters.stale_replies += 1
                    seen.note("stale", f"a reply from servo {pkt.servo_id} while awaiting servo {want}")
                    return None
                got.append(pkt)
                if len(got) == len(ids):
                    break
            if self._decoder.stats.errors > errors_before:
                seen.note("corrupt", "a damaged packet")
                return None
        if check is not None:
            why = check(got)
            if why:
                self.counters.implausible += 1
                seen.note("implausible", why)
                return None
        return got
