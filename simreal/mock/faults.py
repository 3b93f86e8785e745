"""Fault schedule for the mock robot (`--faults SPEC`), seeded by `--seed` (docs/faults.md).

SPEC is a comma-separated list; times T are seconds on the mock's clock (wall time since start,
or simulated time in --lockstep), durations D seconds (default: to the end):

| item                         | effect                                                               |
|------------------------------|----------------------------------------------------------------------|
| drop=P                       | a reply is not sent (the request still took effect)                  |
| corrupt=P                    | 1-3 random bits of a reply are flipped (the CRC rejects it)          |
| late=P[:F]                   | a reply is held back F x the link timeout (default F 1.5), written   |
|                              | out of order after later replies: a stale reply with a valid CRC     |
| dup=P                        | a reply is written twice                                             |
| stall_at=T[:D]               | stop reading and replying; pending work and input are lost           |
| disconnect_at=T              | the process exits (the host sees the port vanish)                    |
| device_fault=T:KIND[:J[:D]]  | latch error KIND (overheat overload voltage servo_alert encoder bus  |
|                              | imu) on joint J (name, index or `all`, default all); the cause lasts |
|                              | D, until then CLEAR_ERRORS is refused                                |
| tilt_at=T:DEG[:D]            | the base is pushed over to DEG degrees (about x) and held there D    |
|                              | (default 1 s)                                                        |
| nan_at=T[:N[:CH]]            | the next N STATE replies (default 1) carry NaN in channel CH: gyro   |
|                              | (default), q (a joint position), dq (a joint velocity) or quat (the  |
|                              | IMU orientation)                                                     |
| encoder_slip_at=T:J:RAD[:D]  | joint J's encoder reads RAD off (a slipped gear, lost calibration)   |
|                              | for D (default: to the end); the servo still tracks what it reads    |
| freeze_timestamp_at=T[:D]    | STATE timestamps stop advancing while replies keep coming            |
| estop_at=T[:D]               | the e-stop is pressed for D (default 0.5 s) and latches              |

Per-reply faults exclude each other (one uniform draw per reply: drop, then corrupt, late, dup),
so the counters in the mock's report are exact. Timed items may repeat.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simreal.errors import UserError

FAULT_KINDS = ("overheat", "overload", "voltage", "servo_alert", "encoder", "bus", "imu")
REPLY_FAULTS = ("drop", "corrupt", "late", "dup")
TIMED = ("stall_at", "disconnect_at", "device_fault", "tilt_at", "nan_at", "freeze_timestamp_at",
         "estop_at", "encoder_slip_at")
NAN_CHANNELS = ("gyro", "q", "dq", "quat")


class FaultSpecError(UserError, ValueError):
    """The --faults text is wrong; the message names the item."""


@dataclass(frozen=True)
class TimedFault:
    kind: str                       # one of TIMED, without "_at"
    at: float                       # s, mock clock
    duration: float = math.inf      # s
    value: float = 0.0              # tilt degrees, NaN reply count, encoder slip rad
    fault: str = ""                 # device_fault kind; nan: the channel
    joint: str = "all"              # device_fault / encoder_slip joint: name, index or "all"


@dataclass(frozen=True)
class FaultSchedule:
    drop: float = 0.0
    corrupt: float = 0.0
    late: float = 0.0
    late_factor: float = 1.5
    dup: float = 0.0
    timed: tuple[TimedFault, ...] = ()
    text: str = ""

    def draw(self, rng: np.random.Generator) -> str | None:
        """Which per-reply fault hits this reply, if any (one draw, mutually exclusive)."""
        if not (self.drop or self.corrupt or self.late or self.dup):
            return None
        u = rng.random()
        for name in REPLY_FAULTS:
            p = getattr(self, name)
            if u < p:
                return name
            u -= p
        return None


def _num(item: str, text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise FaultSpecError(f"--faults {item!r}: {what} {text!r} is not a number") from None
    if math.isnan(v) or v < 0:
        raise FaultSpecError(f"--faults {item!r}: {what} must be >= 0, got {text}")
    return v


def parse_faults(text: str | None) -> FaultSchedule:
    """'drop=0.05,stall_at=3:0.5' -> FaultSchedule; errors name the offending item."""
    probs: dict[str, float] = {}
    factor = 1.5
    timed: list[TimedFault] = []
    for item in [s.strip() for s in (text or "").split(",") if s.strip()]:
        key, sep, val = item.partition("=")
        key = key.strip()
        parts = val.split(":") if sep else []
        if not sep or not val:
            raise FaultSpecError(f"--faults {item!r}: expected key=value (keys: "
                                 f"{', '.join(REPLY_FAULTS + TIMED)})")
        if key in REPLY_FAULTS:
            if len(parts) > (2 if key == "late" else 1):
                raise FaultSpecError(f"--faults {item!r}: too many ':' fields")
            p = _num(item, parts[0], "probability")
            if p > 1:
                raise FaultSpecError(f"--faults {item!r}: probability must be <= 1, got {p}")
            probs[key] = p
            if len(parts) == 2:
                factor = _num(item, parts[1], "late factor")
            continue
        if key not in TIMED:
            raise FaultSpecError(f"--faults {item!r}: unknown fault {key!r} (known: "
                                 f"{', '.join(REPLY_FAULTS + TIMED)})")
        kind = key.removesuffix("_at")
        at = _num(item, parts[0], "time")
        rest = parts[1:]
        limits = {"disconnect": 0, "device_fault": 3, "tilt": 2, "nan": 2, "encoder_slip": 3}
        if len(rest) > limits.get(kind, 1):
            raise FaultSpecError(f"--faults {item!r}: too many ':' fields")
        if kind == "device_fault":
            if not rest or rest[0] not in FAULT_KINDS:
                raise FaultSpecError(f"--faults {item!r}: device_fault=T:KIND[:JOINT[:D]], KIND one of "
                                     f"{', '.join(FAULT_KINDS)}")
            timed.append(TimedFault(kind, at, _num(item, rest[2], "duration") if len(rest) > 2 else math.inf,
                                    fault=rest[0], joint=rest[1] if len(rest) > 1 else "all"))
        elif kind == "tilt":
            if not rest:
                raise FaultSpecError(f"--faults {item!r}: tilt_at=T:DEG[:D]")
            timed.append(TimedFault(kind, at, _num(item, rest[1], "duration") if len(rest) > 1 else 1.0,
                                    value=_num(item, rest[0], "angle")))
        elif kind == "nan":
            channel = rest[1] if len(rest) > 1 else "gyro"
            if channel not in NAN_CHANNELS:
                raise FaultSpecError(f"--faults {item!r}: nan_at=T[:N[:CHANNEL]], CHANNEL one of "
                                     f"{', '.join(NAN_CHANNELS)}")
            timed.append(TimedFault(kind, at, value=_num(item, rest[0], "count") if rest else 1.0, fault=channel))
        elif kind == "encoder_slip":
            if len(rest) < 2:
                raise FaultSpecError(f"--faults {item!r}: encoder_slip_at=T:JOINT:RAD[:D]")
            try:
                slip = float(rest[1])
            except ValueError:
                raise FaultSpecError(f"--faults {item!r}: RAD {rest[1]!r} is not a number") from None
            if not math.isfinite(slip):
                raise FaultSpecError(f"--faults {item!r}: RAD must be finite, got {rest[1]}")
            timed.append(TimedFault(kind, at, _num(item, rest[2], "duration") if len(rest) > 2 else math.inf,
                                    value=slip, joint=rest[0]))
        else:
            default = 0.5 if kind == "estop" else math.inf
            timed.append(TimedFault(kind, at, _num(item, rest[0], "duration") if rest else default))
    total = sum(probs.values())
    if total > 1:
        raise FaultSpecError(f"--faults {text!r}: reply-fault probabilities add up to {total:g} > 1")
    return FaultSchedule(**probs, late_factor=factor, timed=tuple(sorted(timed, key=lambda f: f.at)),
                         text=text or "")


def corrupt(frame: bytes, rng: np.random.Generator) -> bytes:
    """Flip 1-3 random bits inside the frame (its delimiters stay, so the damage stays in this frame)."""
    out = bytearray(frame)
    inner_bits = 8 * (len(out) - 2)
    for bit in rng.choice(inner_bits, size=min(int(rng.integers(1, 4)), inner_bits), replace=False):
        out[1 + bit // 8] ^= 1 << (bit % 8)   # distinct bits: two flips never cancel out
    return bytes(out)


@dataclass
class Injected:
    """What the mock did to the link and the robot, for comparing detected against injected."""
    drop: int = 0
    corrupt: int = 0
    late: int = 0
    dup: int = 0
    stall: int = 0
    disconnect: int = 0
    device_fault: int = 0
    tilt: int = 0
    nan: int = 0                    # STATE replies that carried a NaN
    encoder_slip: int = 0
    freeze_timestamp: int = 0
    estop: int = 0
    events: list = field(default_factory=list)   # (time s, kind, detail) of every timed fault
