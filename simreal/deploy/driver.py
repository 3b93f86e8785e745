"""The host side of the serial link: one transaction per call, tagged, bounded, never filled in.

`Driver` is the interface the runtime codes against (a typing.Protocol, so a mock driver for
runtime tests needs no inheritance); `SerialDriver` implements it over any pyserial URL: a
device path, a pseudo-terminal path (`simreal mock-robot` prints one), `socket://host:port`,
`loop://`.

Every transaction: discard unread input, send the request with a fresh tag, read until a reply
carrying that same tag arrives or the attempt times out; frames with other tags are late
replies and are dropped (faults.md F11). A damaged frame cuts the attempt short (to CORRUPT_GRACE
of its timeout), so a retry still fits in the cycle budget (D1). After `retries` failed attempts, or when the budget is
spent, LinkTimeout is raised: missing data is never replaced by zeros or last cycle's values.

Joint data are matched by NAME (D5): handshake() learns the robot's joint order, and every
array the driver accepts or returns is in the host's order (`joint_names` given at
construction; the robot's order when none is given).

A driver is owned by one thread. close() does not change the robot's torque state: make the
robot safe first (damp(), disable_torque()); the robot's watchdog covers a host that dies.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence, Union, runtime_checkable

import serial  # pyserial: light to import; keeps `simreal --help` fast

from simreal import protocol as P
from simreal.deploy.port import DriverError, write_all
from simreal.deploy.transport import open_port

Values = Union[Sequence[float], Mapping[str, float]]


# --------------------------------------------------------------------------- errors

class LinkTimeout(DriverError):
    """No usable reply within the transaction budget, after all retries (or a write timed out)."""

    def __init__(self, message: str, seen: "Seen | None" = None):
        super().__init__(message)
        self.seen = seen


class WriteTimeout(LinkTimeout):
    """The device stopped reading: a write could not complete within write_timeout_s."""


class LinkLost(DriverError):
    """The device went away (unplugged, mock killed, pty closed): no automatic resume."""


class HandshakeError(DriverError):
    """No valid INFO: silence, another protocol, another version, or the wrong robot."""


class JointMismatch(HandshakeError):
    """The robot's joint names are not the host's."""


class DeviceFault(DriverError):
    """The robot reports error flags or e-stop. Never retried; `state` is the faulted reply (host order)."""

    def __init__(self, message: str, state: P.State):
        super().__init__(message)
        self.state = state


class RemoteError(DriverError):
    """The robot answered ERROR to this request."""

    def __init__(self, error: P.Error):
        super().__init__(f"robot refused the request: {error.describe()}")
        self.error = error


class NotSupported(DriverError):
    """A mock-only request to a robot whose INFO does not declare Capability.SIMULATED."""


# --------------------------------------------------------------------------- config and counters

@dataclass(frozen=True)
class LinkConfig:
    """Timing and retry policy. Per-attempt timeout x (retries + 1) should fit the control period."""
    baudrate: int = 1_000_000
    timeout_s: float = 0.02           # one attempt: request written -> matching reply decoded
    retries: int = 2                  # extra attempts after the first (R)
    budget_s: float | None = None     # whole transaction incl. retries; None = (retries + 1) * timeout_s
    write_timeout_s: float = 0.05
    handshake_timeout_s: float = 0.25
    handshake_retries: int = 4
    exclusive: bool = True            # advisory lock (flock) on POSIX ports

    def __post_init__(self) -> None:
        for name in ("timeout_s", "write_timeout_s", "handshake_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LinkConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.retries < 0 or self.handshake_retries < 0:
            raise ValueError("LinkConfig.retries and handshake_retries must be >= 0")
        if self.budget_s is not None and not self.budget_s > 0:
            raise ValueError(f"LinkConfig.budget_s must be > 0 or None, got {self.budget_s}")


@dataclass
class LinkCounters:
    """Every kind of thing that went wrong on the link, since the driver was made."""
    transactions: int = 0         # completed with a valid reply
    requests: int = 0             # frames written (first attempts + retries)
    retries: int = 0
    timeouts: int = 0             # attempts that ended without a usable reply
    failed: int = 0               # transactions that raised LinkTimeout
    stale_replies: int = 0        # valid frames answering nothing awaited (late, duplicate, reordered): dropped (F10, F11)
    unexpected: int = 0           # right tag but wrong type or joint count, or unsolicited (tag 0)
    device_faults: int = 0
    remote_errors: int = 0
    write_timeouts: int = 0
    link_lost: int = 0
    bytes_flushed: int = 0        # unread input discarded before a request
    late_accepted: int = 0        # answered by an earlier attempt's (late) reply of the same transaction
    decoder: P.DecoderStats = field(default_factory=P.DecoderStats)   # crc/framing/length/... errors

    def as_dict(self) -> dict[str, int]:
        """Flat view for logs: decoder fields are prefixed 'decoder_'."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "decoder"}
        out.update({f"decoder_{k}": v for k, v in dataclasses.asdict(self.decoder).items()})
        return out


@dataclass
class Seen:
    """What one failed transaction received, for error messages that say what was seen."""
    bytes_received: int = 0
    first_bytes: bytearray = field(default_factory=bytearray)
    problems: collections.Counter = field(default_factory=collections.Counter)
    last_problem: str = ""

    def note(self, kind: str, detail: str) -> None:
        self.problems[kind] += 1
        self.last_problem = detail

    def summary(self) -> str:
        if not self.bytes_received:
            return "received nothing"
        parts = [f"received {self.bytes_received} bytes"]
        if self.problems:
            parts.append(", ".join(f"{n} {k}" for k, n in sorted(self.problems.items())))
        else:
            parts.append("no complete frame")
        if self.last_problem:
            parts.append(f"last: {self.last_problem}")
        parts.append(f"first bytes: {bytes(self.first_bytes).hex(' ')}")
        return "; ".join(parts)


# --------------------------------------------------------------------------- joint mapping

@dataclass(frozen=True)
class JointMap:
    """Host joint order <-> robot joint order, by name (faults.md D5)."""
    host_names: tuple[str, ...]
    robot_names: tuple[str, ...]
    robot_from_host: tuple[int, ...]   # robot_values[i] = host_values[robot_from_host[i]]
    host_from_robot: tuple[int, ...]   # host_values[j] = robot_values[host_from_robot[j]]

    @classmethod
    def build(cls, host_names: Sequence[str] | None, robot_names: Sequence[str]) -> JointMap:
        robot = tuple(robot_names)
        host = robot if host_names is None else tuple(host_names)
        for side, names in (("robot", robot), ("host", host)):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise JointMismatch(f"{side} joint names repeat: {dup}")
        missing, extra = sorted(set(host) - set(robot)), sorted(set(robot) - set(host))
        if missing or extra:
            raise JointMismatch(f"joint names differ: the robot lacks {missing}, the host lacks {extra} "
                                f"(robot order: {list(robot)})")
        h_idx = {n: i for i, n in enumerate(host)}
        r_idx = {n: i for i, n in enumerate(robot)}
        return cls(host, robot, tuple(h_idx[n] for n in robot), tuple(r_idx[n] for n in host))

    @property
    def identity(self) -> bool:
        return self.host_names == self.robot_names

    def to_robot(self, values: Values, what: str = "values") -> tuple[float, ...]:
        """Host-order sequence, or a name -> value mapping holding exactly the robot's joints."""
        if isinstance(values, Mapping):
            missing = [n for n in self.robot_names if n not in values]
            extra = sorted(set(values) - set(self.robot_names))
            if missing or extra:
                raise ValueError(f"{what}: missing joints {missing}, unknown joints {extra}")
            return tuple(values[n] for n in self.robot_names)
        if len(values) != len(self.host_names):
            raise ValueError(f"{what} has {len(values)} values, the robot has {len(self.host_names)} joints")
        if self.identity:
            return tuple(values)
        return tuple(values[i] for i in self.robot_from_host)

    def to_host(self, values: Sequence[float]) -> tuple[float, ...]:
        if self.identity:
            return tuple(values)
        return tuple(values[i] for i in self.host_from_robot)

    def mask_to_host(self, mask: int) -> int:
        return sum(1 << j for j, i in enumerate(self.host_from_robot) if mask >> i & 1)

    def state_to_host(self, state: P.State) -> P.State:
        if self.identity:
            return state
        return dataclasses.replace(state, q=self.to_host(state.q), dq=self.to_host(state.dq),
                                   fault_joints=self.mask_to_host(state.fault_joints))


# --------------------------------------------------------------------------- the interface

@runtime_checkable
class Driver(Protocol):
    """What the runtime talks to. Arrays are in host joint order; see the module docstring."""
    info: P.Info | None
    counters: LinkCounters

    def connect(self) -> None: ...
    def handshake(self) -> P.Info: ...
    def read_state(self) -> P.State: ...
    def send_command(self, q_target: Values, kp_scale: Values | None = None,
                     kd_scale: Values | None = None, *, budget_s: float | None = None) -> P.State: ...
    def enable_torque(self) -> P.State: ...
    def disable_torque(self) -> P.State: ...
    def damp(self) -> P.State: ...
    def hold(self) -> P.State: ...
    def heartbeat(self) -> P.HeartbeatAck: ...
    def clear_errors(self) -> P.State: ...
    def reset(self, q: Values | None = None, *, seed: int = 0, base_pos: Sequence[float] | None = None,
              base_quat: Sequence[float] | None = None) -> P.State: ...
    def ground_truth(self) -> P.SimGroundTruth: ...
    def close(self) -> None: ...

    @property
    def joint_names(self) -> tuple[str, ...]: ...


# --------------------------------------------------------------------------- serial implementation

# After a damaged frame, wait this fraction of the attempt's timeout for the real reply before retrying.
CORRUPT_GRACE = 0.25

# SerialTimeoutException is a SerialException: _write catches it first. The rest mean the device is gone
# ("readiness to read but returned no data", EIO from a closed pty, a vanished USB adapter).
_LINK_IO_ERRORS = (serial.SerialException, OSError)


class SerialDriver:
    """`Driver` over a pyserial URL.

    opener(url, config) returns the port object; inject a fault wrapper there
    (simreal.deploy.transport.faulty_opener) to test the layers above. `rtt_s` keeps the round-trip
    times of the last `rtt_window` successful transactions (the read-latency histogram, faults.md T7).
    `clock` is the monotonic time deadlines are kept on (a FakeClock's `now` in drills, whose port
    then passes time on it when it waits); `first_tag` fixes the first request's tag (default: random),
    so a drill can cross the wrap from 65535 to 1.
    """

    def __init__(self, url: str, *, joint_names: Sequence[str] | None = None,
                 robot_name: str | None = None, config: LinkConfig = LinkConfig(),
                 opener: Callable[[str, LinkConfig], Any] = open_port, rtt_window: int = 4096,
                 clock: Callable[[], float] = time.monotonic, first_tag: int | None = None):
        self.url = url
        self.config = config
        self.expected_robot = robot_name
        self.info: P.Info | None = None
        self.counters = LinkCounters()
        self.rtt_s: collections.deque[float] = collections.deque(maxlen=rtt_window)  # successful transactions
        self._host_names = tuple(joint_names) if joint_names is not None else None
        self._map: JointMap | None = None
        self._opener = opener
        self._port: Any = None
        self._decoder = P.FrameDecoder()
        self.counters.decoder = self._decoder.stats
        self._clock = clock
        # Start at a random tag so a reply still in flight from a previous session cannot match.
        self._tag = int.from_bytes(os.urandom(2), "little") if first_tag is None else first_tag - 1

    # ---- lifecycle

    def connect(self) -> None:
        if self._port is None:
            self._port = self._opener(self.url, self.config)

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:   # closing a vanished device may fail; it is gone either way
                pass

    def __enter__(self) -> SerialDriver:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self._joints().host_names

    @property
    def port(self) -> Any:
        """The open port object (e.g. a FaultyPort with its `injected` counts), None when closed."""
        return self._port

    def handshake(self) -> P.Info:
        """HELLO -> INFO with bounded retries; stale bytes from before the open are ignored (T5)."""
        self.connect()
        cfg = self.config
        try:
            info = self._transact(P.Hello(), P.Info, timeout_s=cfg.handshake_timeout_s,
                                  retries=cfg.handshake_retries,
                                  budget_s=cfg.handshake_timeout_s * (cfg.handshake_retries + 1))
        except WriteTimeout:
            raise
        except LinkTimeout as exc:
            raise HandshakeError(
                f"no valid INFO from {self.url} after {cfg.handshake_retries + 1} HELLO attempts of "
                f"{cfg.handshake_timeout_s:g} s ({exc.seen.summary() if exc.seen else exc}): is this a robot "
                f"running simreal protocol v{P.PROTOCOL_VERSION} at {cfg.baudrate} baud?") from exc
        except P.VersionMismatch as exc:
            raise HandshakeError(f"{self.url} speaks simreal protocol v{exc.version}; this host speaks "
                                 f"v{P.PROTOCOL_VERSION}: update the firmware or simreal") from exc
        except RemoteError as exc:
            raise HandshakeError(f"{self.url} refused HELLO: {exc.error.describe()}") from exc
        if info.protocol_version != P.PROTOCOL_VERSION:
            raise HandshakeError(f"{self.url}: INFO declares protocol v{info.protocol_version} inside a "
                                 f"v{P.PROTOCOL_VERSION} frame")
        if self.expected_robot is not None and info.robot_name != self.expected_robot:
            raise HandshakeError(f"{self.url} is robot {info.robot_name!r}, expected {self.expected_robot!r}")
        self._map = JointMap.build(self._host_names, info.joint_names)
        self.info = info
        return info

    # ---- requests (all arrays in host joint order)

    def read_state(self) -> P.State:
        return self._state(P.GetState(), check_fault=True)

    def send_command(self, q_target: Values, kp_scale: Values | None = None, kd_scale: Values | None = None,
                     *, budget_s: float | None = None) -> P.State:
        """One control cycle: position targets down, the state they produced back. Raises DeviceFault."""
        jm = self._joints()
        cmd = P.Command(jm.to_robot(q_target, "q_target"),
                        None if kp_scale is None else jm.to_robot(kp_scale, "kp_scale"),
                        None if kd_scale is None else jm.to_robot(kd_scale, "kd_scale"))
        return self._state(cmd, check_fault=True, budget_s=budget_s)

    def enable_torque(self) -> P.State:
        return self._state(P.Torque(True), check_fault=True)

    # The safe-stop requests never raise DeviceFault: they must work on a faulted robot.
    def disable_torque(self) -> P.State:
        return self._state(P.Torque(False), check_fault=False)

    def damp(self) -> P.State:
        return self._state(P.Damp(), check_fault=False)

    def hold(self) -> P.State:
        return self._state(P.Hold(), check_fault=False)

    def clear_errors(self) -> P.State:
        return self._state(P.ClearErrors(), check_fault=False)

    def heartbeat(self) -> P.HeartbeatAck:
        self._joints()
        return self._transact(P.Heartbeat(), P.HeartbeatAck)

    def reset(self, q: Values | None = None, *, seed: int = 0, base_pos: Sequence[float] | None = None,
              base_quat: Sequence[float] | None = None) -> P.State:
        """MOCK-ONLY: reset the simulation (joint pose in host order, or a name -> value mapping)."""
        self._require_sim("reset")
        q_robot = None if q is None else self._joints().to_robot(q, "q")
        return self._state(P.SimReset(seed, q_robot, base_pos, base_quat), check_fault=False)

    def ground_truth(self) -> P.SimGroundTruth:
        """MOCK-ONLY: base position/velocity, fallen flag and sim time from the simulator."""
        self._require_sim("ground_truth")
        return self._transact(P.SimGetGroundTruth(), P.SimGroundTruth)

    # ---- internals

    def _joints(self) -> JointMap:
        if self._map is None:
            raise DriverError(f"{self.url}: call handshake() before any other request")
        return self._map

    def _require_sim(self, what: str) -> None:
        self._joints()
        if not self.info.simulated:
            raise NotSupported(f"{what}() is mock-only; robot {self.info.robot_name!r} at {self.url} "
                               "is not simulated")

    def _state(self, msg: P.Message, *, check_fault: bool, budget_s: float | None = None) -> P.State:
        jm = self._joints()
        state = jm.state_to_host(self._transact(msg, P.State, budget_s=budget_s))
        if check_fault and state.faulted:
            self.counters.device_faults += 1
            raise DeviceFault(fault_text(self.url, state, jm.host_names), state)
        return state

    def _next_tag(self) -> int:
        self._tag = self._tag % 0xFFFF + 1    # 1..65535; 0 is reserved for unsolicited robot frames
        return self._tag

    def _reply_problem(self, msg: P.Message) -> str:
        """Why a reply with the right tag and type is still unusable ('' when it is fine)."""
        if isinstance(msg, P.State) and self._map is not None and len(msg.q) != len(self._map.robot_names):
            return f"STATE carries {len(msg.q)} joints, the robot declared {len(self._map.robot_names)}"
        return ""

    def _transact(self, msg: P.Message, expect: type, *, timeout_s: float | None = None,
                  retries: int | None = None, budget_s: float | None = None) -> Any:
        cfg, c = self.config, self.counters
        timeout_s = cfg.timeout_s if timeout_s is None else timeout_s
        retries = cfg.retries if retries is None else retries
        if budget_s is None:
            budget_s = cfg.budget_s if cfg.budget_s is not None else timeout_s * (retries + 1)
        if self._port is None:
            raise DriverError(f"{self.url}: not connected")
        start = self._clock()
        end = start + budget_s
        seen = Seen()
        tags: list[int] = []                 # this transaction's attempts: a reply to any is its answer
        first_sent = None
        for attempt in range(retries + 1):
            if attempt:
                c.retries += 1
            tag = self._next_tag()
            frame = P.encode(msg, tag)       # may raise FrameTooLong/BadValue: caller error, nothing sent
            if not attempt:
                self._flush()                # a retry keeps what arrived: the last attempt's reply may be in it
            sent = self._clock()
            first_sent = first_sent or sent
            self._write(frame)
            c.requests += 1
            tags.append(tag)
            reply = self._await(tags, expect, min(sent + timeout_s, end), timeout_s * CORRUPT_GRACE, seen)
            if reply is not None:
                c.transactions += 1
                self.rtt_s.append(self._clock() - (sent if reply[0] == tag else first_sent))
                if reply[0] != tag:
                    c.late_accepted += 1
                return reply[1]
            c.timeouts += 1
            if self._clock() >= end:
                break
        c.failed += 1
        raise LinkTimeout(f"no valid {expect.TYPE.name} reply to {msg.TYPE.name} from {self.url} within "
                          f"{budget_s * 1e3:.1f} ms ({attempt + 1} attempts of {timeout_s * 1e3:.1f} ms): "
                          f"{seen.summary()}", seen)

    def _await(self, tags: list[int], expect: type, deadline: float, grace: float, seen: Seen) -> Any:
        """(tag, reply) for the first usable reply to any of this transaction's attempts (`tags`, the
        current one last), or None when the attempt is over. An earlier attempt's reply that comes
        late is still an answer to this same request (the same COMMAND targets, the same read): taking
        it is what keeps a slow reply from costing the cycle. A reply to an earlier TRANSACTION
        carries a tag not in `tags` and is dropped as stale (F11).

        A damaged frame may have been our reply, or noise just ahead of it: wait at most `grace`
        longer, then retry rather than sit out the whole timeout (D1). A reply that carries our tag
        but cannot be used ends the attempt at once: the robot has answered.
        """
        c = self.counters
        shortened = False
        while True:
            data = self._read(deadline)
            if data is None:
                return None
            seen.bytes_received += len(data)
            if len(seen.first_bytes) < 32:
                seen.first_bytes += data[:32 - len(seen.first_bytes)]
            items = self._decoder.feed(data)
            for i, item in enumerate(items):
                if isinstance(item, P.VersionMismatch):
                    raise item
                if isinstance(item, P.ProtocolError):
                    seen.note(type(item).__name__, str(item))
                    if not shortened:
                        deadline, shortened = min(deadline, self._clock() + grace), True
                    continue
                if item.tag not in tags:
                    self._drop(item, seen, tags[-1])
                    continue
                self._drop_all(items[i + 1:])       # whatever came with the answer is not awaited (F10)
                if isinstance(item.msg, P.Error):
                    c.remote_errors += 1
                    raise RemoteError(item.msg)
                problem = "" if isinstance(item.msg, expect) else \
                    f"a {item.msg.TYPE.name} where {expect.TYPE.name} was expected"
                problem = problem or self._reply_problem(item.msg)
                if problem:
                    c.unexpected += 1
                    seen.note("unusable replies", problem)
                    return None
                return item.tag, item.msg

    def _drop(self, frame: P.Frame, seen: Seen | None = None, awaiting: int | None = None) -> None:
        """Count a valid frame that answers nothing awaited: unsolicited (tag 0) or stale (F10, F11)."""
        if frame.tag == 0:          # unsolicited: the robot's own report, not an answer
            self.counters.unexpected += 1
            what = ("unsolicited frames", f"a {frame.msg.TYPE.name} with tag 0")
        else:                       # a late, duplicated or reordered reply
            self.counters.stale_replies += 1
            what = ("stale replies", f"a {frame.msg.TYPE.name} with tag {frame.tag}, awaiting {awaiting}")
        if seen is not None:
            seen.note(*what)

    def _drop_all(self, items: list) -> None:
        for item in items:          # damaged frames are already in the decoder's stats
            if isinstance(item, P.Frame):
                self._drop(item)

    def _flush(self) -> None:
        port = self._port
        try:
            waiting = port.in_waiting
            if waiting:                 # read, not only discarded, so every dropped frame is counted
                self.counters.bytes_flushed += waiting
                self._drop_all(self._decoder.feed(port.read(waiting)))
            port.reset_input_buffer()
        except _LINK_IO_ERRORS as exc:
            self._lost(exc)
        self._decoder.reset()

    def _write(self, frame: bytes) -> None:
        try:
            write_all(self._port, frame, self.config.write_timeout_s)
        except serial.SerialTimeoutException as exc:
            self.counters.write_timeouts += 1
            raise WriteTimeout(f"write to {self.url} timed out after {self.config.write_timeout_s:g} s "
                               f"({exc}): the device is not reading") from exc
        except _LINK_IO_ERRORS as exc:
            self._lost(exc)

    def _read(self, deadline: float) -> bytes | None:
        """Whatever has arrived, waiting at most until the deadline; None when it passed."""
        port = self._port
        try:
            n = port.in_waiting
            if not n:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return None
                port.timeout = remaining
                data = port.read(1)
                if not data:
                    return None if self._clock() >= deadline else b""
                n = port.in_waiting
                return data + port.read(n) if n else data
            return port.read(n)
        except _LINK_IO_ERRORS as exc:
            self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        self.counters.link_lost += 1
        raise LinkLost(f"link to {self.url} lost: {exc}") from exc


def fault_text(url: str, state: P.State, names: Sequence[str]) -> str:
    parts = []
    if state.errors:
        parts.append(f"errors {P.Fault(state.errors)!r}")
    if state.status & P.Status.ESTOP:
        parts.append("e-stop active")
    joints = [n for j, n in enumerate(names) if state.fault_joints >> j & 1]
    if joints:
        parts.append(f"joints {joints}")
    return f"device fault on {url}: " + ", ".join(parts)


LINK_ERRORS: tuple[type[Exception], ...] = (DriverError, P.ProtocolError)
