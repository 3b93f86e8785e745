"""A fault-injecting port (docs/faults.md, layer L2), and `open_port`, which gives one for `fault://` URLs.

    simreal deploy BUNDLE --port 'fault://seed=3,drop=0.01,dup=0.01@/dev/pts/5'
    driver = SerialDriver(url, opener=faulty_opener(FaultPlan(seed=3, bit_error_rate=1e-4)))

`fault://SPEC@URL` opens URL (any pyserial URL: a pty, a device, `socket://`) and wraps it in a
FaultyPort whose plan is SPEC, comma-separated FaultPlan fields (`seed=3,truncate=0.02`). It is
handled here rather than registered as a pyserial protocol handler so that every opener of the
driver (and its errors naming the port) treats it like any other URL.

Faults act on the host's side of the link: bytes it receives are damaged, padded with garbage,
held back, reordered or lost, and requests it writes may vanish. Byte faults (bit errors,
garbage) act on the stream; frame faults split the stream on the protocol's 0x00 delimiter and
act on whole frames, at most one per frame, so that each is a known loss for the driver's
counters to match (faults.md F10). Everything is drawn from one seeded generator and counted in
`FaultyPort.injected`, so a run can be replayed and its fault counts compared with what the
driver detected.
"""
from __future__ import annotations

import collections
import dataclasses
import errno
import heapq
import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from simreal.deploy.port import PortError, open_serial, write_all

if TYPE_CHECKING:
    from simreal.deploy.driver import LinkConfig

FAULT_SCHEME = "fault://"

# Frame faults in the order one uniform draw is compared with their cumulative rates.
FRAME_FAULTS = ("drop", "truncate", "swap", "flip", "dup", "reorder", "late")


@dataclass(frozen=True)
class FaultPlan:
    seed: int = 0
    # byte faults on the received stream
    bit_error_rate: float = 0.0    # probability that any received bit is flipped
    garbage_rate: float = 0.0      # probability that a received chunk is preceded by a garbage burst
    garbage_max: int = 64          # burst length is uniform in 1..garbage_max (0x00 included)
    latency_s: float = 0.0         # received bytes become readable only at multiples of this (USB latency timer)
    # requests
    drop_write_rate: float = 0.0   # probability that a written request never reaches the device
    # frame faults: probability per received frame (at most one per frame; their sum <= 1)
    drop: float = 0.0              # the frame vanishes
    truncate: float = 0.0          # cut to 1..len-1 of its encoded bytes, delimiters kept
    swap: float = 0.0              # two adjacent differing bytes exchanged
    flip: float = 0.0              # one bit flipped (never into a delimiter: the frame stays one frame)
    dup: float = 0.0               # delivered twice
    reorder: float = 0.0           # held back until the next frame has been delivered
    late: float = 0.0              # held back late_s seconds
    late_s: float = 0.02
    late_jitter_s: float = 0.0     # a late frame is held late_s + U(0, late_jitter_s)
    # the device goes away: after this many received frames (-1: never)
    stall_after: int = -1          # nothing more arrives; writes still go out
    disconnect_after: int = -1     # every operation fails as a vanished device does (EIO)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"FaultPlan.{f.name} must be finite, got {v}")
        for name in ("bit_error_rate", "garbage_rate", "drop_write_rate") + FRAME_FAULTS:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"FaultPlan.{name} must be in [0, 1], got {getattr(self, name)}")
        if sum(getattr(self, n) for n in FRAME_FAULTS) > 1.0 + 1e-12:
            raise ValueError("FaultPlan frame fault rates (" + ", ".join(FRAME_FAULTS) + ") must sum to <= 1")
        if self.garbage_max < 1 or self.latency_s < 0 or self.late_s < 0 or self.late_jitter_s < 0:
            raise ValueError("FaultPlan.garbage_max must be >= 1, latency_s, late_s and late_jitter_s >= 0")

    @property
    def frame_faults(self) -> bool:
        return any(getattr(self, n) for n in FRAME_FAULTS) or self.stall_after >= 0 or self.disconnect_after >= 0

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """'seed=3,drop=0.01' -> FaultPlan; ValueError names the bad field."""
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for item in filter(None, (s.strip() for s in spec.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in types:
                raise ValueError(f"unknown fault {item!r} (known: {', '.join(types)})")
            try:
                kwargs[key] = int(value) if types[key] == "int" else float(value)
            except ValueError:
                raise ValueError(f"fault {key}: {value!r} is not a number") from None
        return cls(**kwargs)


def parse_fault_url(url: str) -> tuple[FaultPlan, str]:
    """'fault://SPEC@URL' -> (plan, URL)."""
    spec, sep, inner = url[len(FAULT_SCHEME):].partition("@")
    if not sep or not inner:
        raise ValueError("expected fault://SPEC@URL, e.g. fault://seed=1,drop=0.01@/dev/pts/4")
    return FaultPlan.parse(spec), inner


def open_port(url: str, config: LinkConfig) -> Any:
    """Open any pyserial URL, or `fault://SPEC@URL` as a FaultyPort over URL; errors name the port."""
    if not url.startswith(FAULT_SCHEME):
        return open_serial(url, config)
    try:
        plan, inner = parse_fault_url(url)
    except ValueError as exc:
        raise PortError(f"port {url}: {exc}") from None
    return FaultyPort(open_serial(inner, config), plan)


class FaultyPort:
    """Looks like a pyserial port to the driver: in_waiting, timeout, read, write, reset_input_buffer, close."""

    def __init__(self, port: Any, plan: FaultPlan, *, clock: Callable[[], float] = time.monotonic):
        self._port = port
        self._clock = clock             # when held frames are due: a FakeClock's now() in drills
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._readable = bytearray()
        self._held: list[tuple[float, int, bytes]] = []    # heap of (readable at, order, bytes)
        self._order = 0
        self._segment = bytearray()                        # bytes of a frame not yet closed by a delimiter
        self._behind: list[bytes] = []                     # reordered frames, released after the next one
        self._frames = 0
        self._gone = False
        self.timeout: float | None = getattr(port, "timeout", None)
        self.injected: collections.Counter = collections.Counter()

    # ---- the pyserial surface the driver uses

    @property
    def in_waiting(self) -> int:
        self._pump(0.0)
        return len(self._readable)

    def read(self, size: int = 1) -> bytes:
        """Up to `size` bytes, waiting at most `timeout` for the first one (short reads are allowed)."""
        deadline = self._clock() + (self.timeout if self.timeout is not None else math.inf)
        while not self._readable:
            now = self._clock()
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
        self._check()
        if self._rng.random() < self.plan.drop_write_rate:
            self.injected["writes_dropped"] += 1
            return len(data)
        write_all(self._port, data, self._port.write_timeout)
        return len(data)

    @property
    def pending(self) -> int:
        """What has not been delivered yet: late and reordered frames, and chunks `latency_s` holds."""
        return len(self._held) + len(self._behind)

    def reset_input_buffer(self) -> None:
        # Like tcflush: what the OS holds is gone; bytes still inside the adapter (held) arrive later.
        self._check()
        self._port.reset_input_buffer()
        self._readable.clear()

    def close(self) -> None:
        self._port.close()

    # ---- fault injection

    def _check(self) -> None:
        if self._gone:
            raise OSError(errno.EIO, "Input/output error (fault://: the device was disconnected)")

    def _pump(self, wait: float) -> None:
        """Take what the real port has (waiting up to `wait` for it), damage it, and release what is due."""
        self._check()
        port = self._port
        n = port.in_waiting
        if not n and wait > 0:
            port.timeout = wait
            data = port.read(1)
            n = port.in_waiting
            data += port.read(n) if n else b""
        else:
            data = port.read(n) if n else b""
        now = self._clock()
        if data and self.plan.frame_faults:
            data = self._frame_faults(data, now)
            self._check()
        if data:
            self._hold(self._damage(data), now, self.plan.latency_s)
        while self._held and self._held[0][0] <= now:
            self._readable += heapq.heappop(self._held)[2]

    def _hold(self, data: bytes, now: float, delay: float, *, quantized: bool = True) -> None:
        at = math.ceil(now / delay) * delay if delay and quantized else now + delay
        heapq.heappush(self._held, (at, self._order, data))
        self._order += 1

    def _frame_faults(self, data: bytes, now: float) -> bytes:
        """The stream with each frame completed by `data` faulted; an unclosed frame waits for its delimiter."""
        plan, rng, out = self.plan, self._rng, bytearray()
        *closed, rest = bytes(self._segment + data).split(b"\x00")
        self._segment = bytearray(rest)
        for body in filter(None, closed):
            self._frames += 1
            if plan.disconnect_after >= 0 and self._frames > plan.disconnect_after:
                self._gone = True
                self.injected["disconnects"] += 1
                return b""
            if plan.stall_after >= 0 and self._frames > plan.stall_after:
                self.injected["frames_stalled"] += 1
                continue
            fault = self._draw()
            frame = b"\x00" + body + b"\x00"
            if fault == "drop":
                self.injected["frames_dropped"] += 1
                continue
            if fault == "truncate" and len(body) > 1:
                frame = b"\x00" + body[:rng.randrange(1, len(body))] + b"\x00"
                self.injected["frames_truncated"] += 1
            elif fault == "swap":
                pairs = [i for i in range(len(body) - 1) if body[i] != body[i + 1]]
                if pairs:
                    i = rng.choice(pairs)
                    b = bytearray(body)
                    b[i], b[i + 1] = b[i + 1], b[i]
                    frame = b"\x00" + bytes(b) + b"\x00"
                    self.injected["frames_swapped"] += 1
            elif fault == "flip":
                b = bytearray(body)
                i = rng.randrange(len(b))
                bit = rng.choice([k for k in range(8) if b[i] ^ (1 << k)])   # never a new delimiter
                b[i] ^= 1 << bit
                frame = b"\x00" + bytes(b) + b"\x00"
                self.injected["frames_flipped"] += 1
            elif fault == "dup":
                frame = frame + frame
                self.injected["frames_duplicated"] += 1
            elif fault == "reorder":
                self._behind.append(frame)
                self.injected["frames_reordered"] += 1
                continue
            elif fault == "late":
                delay = plan.late_s + (rng.uniform(0.0, plan.late_jitter_s) if plan.late_jitter_s else 0.0)
                self._hold(frame, now, delay, quantized=False)
                self.injected["frames_late"] += 1
                continue
            out += frame
            for held in self._behind:           # a reordered frame follows the next one delivered
                out += held
            self._behind.clear()
        return bytes(out)

    def _draw(self) -> str:
        u, acc = self._rng.random(), 0.0
        for name in FRAME_FAULTS:
            acc += getattr(self.plan, name)
            if u < acc:
                return name
        return ""

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
