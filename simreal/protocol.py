"""The simreal serial protocol: frames and messages as pure functions and dataclasses, no I/O.

Wire format (docs/protocol.md is the normative description, with golden vectors)::

    0x00 | COBS( header | payload | crc32 ) | 0x00

    header  = <BBHH  version, msg type, tag, payload length   (little-endian, 6 bytes)
    crc32   = <I     CRC-32/ISO-HDLC (zlib.crc32) of header+payload; check value 0xCBF43926

A delimiter at both ends means a garbage burst costs at most the frame it lands in: the
leading 0x00 of the next frame resynchronizes the decoder (docs/protocol.md, framing). The tag
is chosen by the host per request and echoed by the reply, so a late reply to an earlier
request can pass its CRC and still never be taken for the current one.

The codec carries what was sent: non-finite floats round-trip unchanged. Rejecting NaN/Inf
is the safety layer's job (it must happen before any clamp), not the codec's.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, fields
from enum import IntEnum, IntFlag
from typing import ClassVar, Sequence, Union

PROTOCOL_VERSION = 1
MAX_PAYLOAD = 512                      # bytes; larger frames are refused on send, dropped on receive
MAX_JOINTS = 32                        # fault_joints is a u32 bitmask
MAX_GAIN_SCALE = 2.0                   # COMMAND kp/kd scales lie in [0, MAX_GAIN_SCALE]
MAX_NAME = 32                          # bytes of UTF-8 per robot or joint name
MAX_DETAIL = 200                       # bytes of UTF-8 in an ERROR detail string
HEADER = struct.Struct("<BBHH")        # version, type, tag, payload length
CRC = struct.Struct("<I")
MAX_BODY = HEADER.size + MAX_PAYLOAD + CRC.size
# COBS adds one code byte per 254 data bytes, plus one: the worst case for MAX_BODY bytes.
MAX_ENCODED = MAX_BODY + MAX_BODY // 254 + 1
MAX_FRAME = MAX_ENCODED + 2            # with both delimiters: the most bytes one frame takes on the wire
DELIMITER = 0x00


class MsgType(IntEnum):
    # host -> robot requests: 0x01-0x3F
    HELLO = 0x01
    GET_STATE = 0x02
    COMMAND = 0x03
    TORQUE = 0x04
    HOLD = 0x05
    DAMP = 0x06
    HEARTBEAT = 0x07
    CLEAR_ERRORS = 0x08
    # robot -> host replies: 0x80-0xBF
    INFO = 0x81
    STATE = 0x82
    HEARTBEAT_ACK = 0x87
    ERROR = 0xBF
    # MOCK-ONLY (simulated robot): requests 0x40-0x7F, replies 0xC0-0xFF. Real firmware answers ERROR/UNSUPPORTED.
    SIM_RESET = 0x40
    SIM_GET_GROUND_TRUTH = 0x41
    SIM_GROUND_TRUTH = 0xC1


def is_sim_only(msg_type: int) -> bool:
    """Mock-only message types: bit 6 set (0x40-0x7F requests, 0xC0-0xFF replies)."""
    return bool(msg_type & 0x40)


class Status(IntFlag):
    """STATE.status bits: what the robot is doing."""
    TORQUE_ON = 1 << 0
    ESTOP = 1 << 1          # e-stop pressed or latched; the robot ignores COMMAND
    DAMPING = 1 << 2        # damping mode (kp = 0, kd > 0)
    HOLDING = 1 << 3        # holding the pose it had when HOLD arrived
    WATCHDOG = 1 << 4       # the host went silent for watchdog_ms; the robot made itself safe
    SIMULATED = 1 << 5      # this is the mock robot
    CALIBRATED = 1 << 6     # joint offsets loaded; firmware refuses TORQUE on without it


class Fault(IntFlag):
    """STATE.errors bits: conditions the host must treat as a device fault (faults.md F9)."""
    OVERHEAT = 1 << 0
    OVERLOAD = 1 << 1
    VOLTAGE = 1 << 2
    SERVO_ALERT = 1 << 3
    ENCODER = 1 << 4
    BUS = 1 << 5            # a servo did not answer on the robot's bus: the state is not trustworthy
    IMU = 1 << 6


class Capability(IntFlag):
    """INFO.capabilities bits."""
    SIMULATED = 1 << 0      # SIM_* messages are supported
    GAINS = 1 << 1          # COMMAND kp/kd scales are honoured


class ErrorCode(IntEnum):
    """ERROR.code values."""
    BAD_REQUEST = 1         # payload length or a value was wrong
    UNKNOWN_TYPE = 2
    VERSION = 3             # the robot does not speak the request's protocol version
    UNSUPPORTED = 4         # e.g. a SIM_* request to real firmware
    JOINT_COUNT = 5         # a per-joint array had the wrong length
    REFUSED = 6             # valid but not allowed now (e-stop, not calibrated, fault latched)
    INTERNAL = 7


# --------------------------------------------------------------------------- errors

class ProtocolError(Exception):
    """A frame could not be encoded or a received frame is unusable.

    When the damaged part came after a header that passed its CRC, `tag` and `msg_type` say which
    request it was, so a robot can answer ERROR with the right tag; otherwise they are None.
    """
    counter: ClassVar[str] = "bad_value"   # the DecoderStats field this error increments
    tag: int | None = None
    msg_type: int | None = None


class FramingError(ProtocolError):
    """Malformed COBS or a frame too short to hold a header and CRC."""
    counter = "framing_errors"


class CrcError(ProtocolError):
    counter = "crc_errors"


class FrameTooLong(ProtocolError):
    """Payload above MAX_PAYLOAD (refused on send) or a frame longer than MAX_FRAME (dropped on receive)."""
    counter = "too_long"


class BadLength(ProtocolError):
    """Payload length disagrees with the header or with the message layout."""
    counter = "bad_length"

    def __init__(self, message: str, msg_type: int | None = None, got: int | None = None,
                 expected: int | None = None):
        super().__init__(message)
        self.msg_type, self.got, self.expected = msg_type, got, expected


class UnknownMessage(ProtocolError):
    counter = "unknown_type"

    def __init__(self, msg_type: int, tag: int):
        super().__init__(f"unknown message type 0x{msg_type:02X} (tag {tag})")
        self.msg_type, self.tag = msg_type, tag


class VersionMismatch(ProtocolError):
    """A frame with a valid CRC but another protocol version (the header layout never changes)."""
    counter = "version_mismatch"

    def __init__(self, version: int, msg_type: int, tag: int):
        super().__init__(f"frame speaks protocol version {version}, this side speaks {PROTOCOL_VERSION} "
                         f"(type 0x{msg_type:02X}, tag {tag})")
        self.version, self.msg_type, self.tag = version, msg_type, tag


class BadValue(ProtocolError):
    """A field holds a value its type does not allow (flag byte not 0/1, bad UTF-8...)."""
    counter = "bad_value"


class TooManyJoints(BadValue):
    """A per-joint array longer than MAX_JOINTS: a robot answers ERROR JOINT_COUNT, as for any
    joint count other than its own."""


def error_code_for(error: ProtocolError) -> "ErrorCode":
    """The ERROR code a robot answers a CRC-valid but unusable request with (docs/protocol.md 5)."""
    if isinstance(error, VersionMismatch):
        return ErrorCode.VERSION
    if isinstance(error, UnknownMessage):
        return ErrorCode.UNKNOWN_TYPE
    if isinstance(error, TooManyJoints):
        return ErrorCode.JOINT_COUNT
    return ErrorCode.BAD_REQUEST


# --------------------------------------------------------------------------- COBS + CRC

def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC (poly 0x04C11DB7 reflected, init/xorout 0xFFFFFFFF); crc32(b"123456789") == 0xCBF43926."""
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the output holds no 0x00 (canonical form, as Cheshire & Baker)."""
    out = bytearray()
    blocks = bytes(data).split(b"\x00")
    last = len(blocks) - 1
    for i, block in enumerate(blocks):
        # Each block but the last was followed by a zero, which its final code byte stands for.
        while len(block) >= 254:
            out.append(0xFF)
            out += block[:254]
            block = block[254:]
            if not block and i == last:
                return bytes(out)   # data ended on a full 254-byte run: no trailing code
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    if DELIMITER in data:
        raise FramingError(f"0x00 at byte {data.index(DELIMITER)} inside a COBS frame")
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        end = i + code
        if end > n:
            raise FramingError(f"COBS code {code} at byte {i} runs past the frame end ({n} bytes)")
        out += data[i + 1:end]
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --------------------------------------------------------------------------- payload helpers

def _floats(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}f")


def _need(msg_type: MsgType, payload: bytes, expected: int, why: str = "") -> None:
    if len(payload) != expected:
        suffix = f" {why}" if why else ""
        raise BadLength(f"{msg_type.name} payload is {len(payload)} bytes, expected {expected}{suffix}",
                        int(msg_type), len(payload), expected)


def _need_at_least(msg_type: MsgType, payload: bytes, n: int) -> None:
    if len(payload) < n:
        raise BadLength(f"{msg_type.name} payload is {len(payload)} bytes, expected at least {n}",
                        int(msg_type), len(payload), n)


def _joint_count(msg_type: MsgType, n: int) -> int:
    if n > MAX_JOINTS:
        raise TooManyJoints(f"{msg_type.name} joint count {n} exceeds MAX_JOINTS={MAX_JOINTS}")
    return n


def _flag(msg_type: MsgType, name: str, value: int) -> bool:
    if value not in (0, 1):
        raise BadValue(f"{msg_type.name}.{name} must be 0 or 1, got {value}")
    return bool(value)


def _pack_name(msg_type: MsgType, what: str, name: str, limit: int = MAX_NAME) -> bytes:
    raw = name.encode("utf-8")
    if len(raw) > limit or b"\x00" in raw:
        raise BadValue(f"{msg_type.name} {what} {name!r}: must be <= {limit} UTF-8 bytes without NUL")
    return bytes([len(raw)]) + raw


def _unpack_name(msg_type: MsgType, what: str, payload: bytes, off: int) -> tuple[str, int]:
    _need_at_least(msg_type, payload, off + 1)
    n = payload[off]
    end = off + 1 + n
    if end > len(payload):
        raise BadLength(f"{msg_type.name} {what} at byte {off} needs {n} bytes, only "
                        f"{len(payload) - off - 1} left in a {len(payload)}-byte payload",
                        int(msg_type), len(payload), end)
    try:
        return payload[off + 1:end].decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise BadValue(f"{msg_type.name} {what} at byte {off} is not UTF-8: {exc}") from None


def _same_len(msg_type: MsgType, ref: str, n: int, **arrays: Sequence[float] | None) -> None:
    for name, arr in arrays.items():
        if arr is not None and len(arr) != n:
            raise BadValue(f"{msg_type.name}.{name} has {len(arr)} values, {ref} has {n}")


def _fixed(msg_type: MsgType, name: str, arr: Sequence[float], n: int) -> None:
    if len(arr) != n:
        raise BadValue(f"{msg_type.name}.{name} needs {n} values, got {len(arr)}")


class _Message:
    """Mixin: every message is a frozen dataclass with TYPE, pack() and unpack().

    The defaults here are those of an empty-payload message.
    """
    TYPE: ClassVar[MsgType]

    def __post_init__(self) -> None:
        # Sequences (lists, numpy arrays) become tuples so messages compare by value and stay immutable.
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list) or hasattr(v, "__array__"):
                object.__setattr__(self, f.name, tuple(v))

    def pack(self) -> bytes:
        return b""

    @classmethod
    def unpack(cls, payload: bytes):
        _need(cls.TYPE, payload, 0)
        return cls()


# --------------------------------------------------------------------------- requests (host -> robot)

@dataclass(frozen=True)
class Hello(_Message):
    """Start of every session. Reply: INFO. Payload: none."""
    TYPE: ClassVar[MsgType] = MsgType.HELLO


@dataclass(frozen=True)
class GetState(_Message):
    """Reply: STATE."""
    TYPE: ClassVar[MsgType] = MsgType.GET_STATE


@dataclass(frozen=True)
class Command(_Message):
    """Joint position targets in the ROBOT's joint order (rad). Reply: STATE after it is applied.

    kp_scale/kd_scale multiply the robot's configured gains per joint; both or neither.
    Payload: u8 flags (bit0 = scales present), u8 n, f32 q[n], [f32 kp_scale[n], f32 kd_scale[n]].
    """
    TYPE: ClassVar[MsgType] = MsgType.COMMAND
    q: tuple[float, ...]
    kp_scale: tuple[float, ...] | None = None
    kd_scale: tuple[float, ...] | None = None

    def pack(self) -> bytes:
        n = _joint_count(self.TYPE, len(self.q))
        gains = self.kp_scale is not None or self.kd_scale is not None
        if gains and (self.kp_scale is None or self.kd_scale is None):
            raise BadValue("COMMAND: give both kp_scale and kd_scale, or neither")
        _same_len(self.TYPE, "q", n, kp_scale=self.kp_scale, kd_scale=self.kd_scale)
        out = struct.pack("<BB", int(gains), n) + _floats(n).pack(*self.q)
        if gains:
            out += _floats(2 * n).pack(*self.kp_scale, *self.kd_scale)
        return out

    @classmethod
    def unpack(cls, payload: bytes) -> Command:
        _need_at_least(cls.TYPE, payload, 2)
        flags, n = payload[0], _joint_count(cls.TYPE, payload[1])
        if flags & ~1:
            raise BadValue(f"COMMAND flags 0x{flags:02X} has unknown bits")
        k = 3 if flags else 1
        _need(cls.TYPE, payload, 2 + 4 * k * n, f"for {n} joints{' with gain scales' if flags else ''}")
        vals = _floats(k * n).unpack_from(payload, 2)
        if flags:
            return cls(vals[:n], vals[n:2 * n], vals[2 * n:])
        return cls(vals)


@dataclass(frozen=True)
class Torque(_Message):
    """Enable (True) or disable (False) the servos' torque. Reply: STATE. Payload: u8 enable (0 or 1)."""
    TYPE: ClassVar[MsgType] = MsgType.TORQUE
    enable: bool

    def pack(self) -> bytes:
        return bytes([1 if self.enable else 0])

    @classmethod
    def unpack(cls, payload: bytes) -> Torque:
        _need(cls.TYPE, payload, 1)
        return cls(_flag(cls.TYPE, "enable", payload[0]))


@dataclass(frozen=True)
class Hold(_Message):
    """Hold the current pose with torque on. Reply: STATE."""
    TYPE: ClassVar[MsgType] = MsgType.HOLD


@dataclass(frozen=True)
class Damp(_Message):
    """Damping mode: no position stiffness, joint damping only (the safe way down). Reply: STATE."""
    TYPE: ClassVar[MsgType] = MsgType.DAMP


@dataclass(frozen=True)
class Heartbeat(_Message):
    """Keep the robot's watchdog fed without moving anything. Reply: HEARTBEAT_ACK."""
    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT


@dataclass(frozen=True)
class ClearErrors(_Message):
    """Clear latched errors and the e-stop latch if their cause is gone. Reply: STATE (or ERROR/REFUSED)."""
    TYPE: ClassVar[MsgType] = MsgType.CLEAR_ERRORS


@dataclass(frozen=True)
class SimReset(_Message):
    """MOCK-ONLY. Reset the simulation, optionally to a joint pose (robot order) and/or base pose.

    Payload: u32 seed (0 = keep the current seed), u8 flags (bit0 joint pose, bit1 base pose), u8 n,
    [f32 q[n]], [f32 base_pos[3], f32 base_quat_wxyz[4]]. n is 0 without a joint pose. Reply: STATE.
    """
    TYPE: ClassVar[MsgType] = MsgType.SIM_RESET
    seed: int = 0
    q: tuple[float, ...] | None = None
    base_pos: tuple[float, ...] | None = None
    base_quat: tuple[float, ...] | None = None

    def pack(self) -> bytes:
        if (self.base_pos is None) != (self.base_quat is None):
            raise BadValue("SIM_RESET: give both base_pos and base_quat, or neither")
        if not 0 <= self.seed <= 0xFFFFFFFF:
            raise BadValue(f"SIM_RESET.seed {self.seed} is not a u32")
        q = self.q or ()
        n = _joint_count(self.TYPE, len(q))
        flags = (self.q is not None) | ((self.base_pos is not None) << 1)
        out = struct.pack("<IBB", self.seed, flags, n) + _floats(n).pack(*q)
        if self.base_pos is not None:
            _fixed(self.TYPE, "base_pos", self.base_pos, 3)
            _fixed(self.TYPE, "base_quat", self.base_quat, 4)
            out += _floats(7).pack(*self.base_pos, *self.base_quat)
        return out

    @classmethod
    def unpack(cls, payload: bytes) -> SimReset:
        _need_at_least(cls.TYPE, payload, 6)
        seed, flags, n = struct.unpack_from("<IBB", payload)
        _joint_count(cls.TYPE, n)
        if flags & ~3:
            raise BadValue(f"SIM_RESET flags 0x{flags:02X} has unknown bits")
        if not flags & 1 and n:
            raise BadValue(f"SIM_RESET has n={n} joints but no joint-pose flag")
        _need(cls.TYPE, payload, 6 + 4 * n + (28 if flags & 2 else 0), f"for flags 0x{flags:02X}, {n} joints")
        q = _floats(n).unpack_from(payload, 6) if flags & 1 else None
        pos = quat = None
        if flags & 2:
            base = _floats(7).unpack_from(payload, 6 + 4 * n)
            pos, quat = base[:3], base[3:]
        return cls(seed, q, pos, quat)


@dataclass(frozen=True)
class SimGetGroundTruth(_Message):
    """MOCK-ONLY. Reply: SIM_GROUND_TRUTH."""
    TYPE: ClassVar[MsgType] = MsgType.SIM_GET_GROUND_TRUTH


# --------------------------------------------------------------------------- replies (robot -> host)

_INFO_HEAD = struct.Struct("<BBBBBHH")   # protocol, fw major/minor/patch, n joints, watchdog_ms, capabilities


@dataclass(frozen=True)
class Info(_Message):
    """Reply to HELLO: who the robot is and its joint names in ITS order.

    Payload: u8 protocol_version, u8 fw_major, u8 fw_minor, u8 fw_patch, u8 n, u16 watchdog_ms
    (0 = no watchdog), u16 capabilities, then robot name and n joint names, each u8 length + UTF-8.
    """
    TYPE: ClassVar[MsgType] = MsgType.INFO
    robot_name: str
    joint_names: tuple[str, ...]
    firmware: tuple[int, int, int] = (0, 0, 0)
    protocol_version: int = PROTOCOL_VERSION
    watchdog_ms: int = 0
    capabilities: int = 0

    @property
    def simulated(self) -> bool:
        return bool(self.capabilities & Capability.SIMULATED)

    def pack(self) -> bytes:
        n = _joint_count(self.TYPE, len(self.joint_names))
        try:
            head = _INFO_HEAD.pack(self.protocol_version, *self.firmware, n, self.watchdog_ms, self.capabilities)
        except struct.error as exc:
            raise BadValue(f"INFO field out of range: {exc}") from None
        out = head + _pack_name(self.TYPE, "robot_name", self.robot_name)
        for i, name in enumerate(self.joint_names):
            out += _pack_name(self.TYPE, f"joint_names[{i}]", name)
        return out

    @classmethod
    def unpack(cls, payload: bytes) -> Info:
        _need_at_least(cls.TYPE, payload, _INFO_HEAD.size)
        proto, major, minor, patch, n, watchdog, caps = _INFO_HEAD.unpack_from(payload)
        _joint_count(cls.TYPE, n)
        robot, off = _unpack_name(cls.TYPE, "robot_name", payload, _INFO_HEAD.size)
        names = []
        for i in range(n):
            name, off = _unpack_name(cls.TYPE, f"joint_names[{i}]", payload, off)
            names.append(name)
        _need(cls.TYPE, payload, off, f"for the names it declares ({len(payload) - off} trailing bytes)")
        return cls(robot, tuple(names), (major, minor, patch), proto, watchdog, caps)


_STATE_HEAD = struct.Struct("<QHHIB")    # timestamp_us, status, errors, fault_joints, n


@dataclass(frozen=True)
class State(_Message):
    """The robot's measurement, one per reply.

    Payload: u64 timestamp_us (robot clock), u16 status (Status), u16 errors (Fault), u32 fault_joints
    (bit i = joint i reports a fault), u8 n, f32 q[n] (rad), f32 dq[n] (rad/s), f32 quat[4] (wxyz),
    f32 gyro[3] (rad/s, body frame), f32 accel[3] (m/s^2, body frame, includes gravity).
    """
    TYPE: ClassVar[MsgType] = MsgType.STATE
    timestamp_us: int
    status: int
    errors: int
    fault_joints: int
    q: tuple[float, ...]
    dq: tuple[float, ...]
    quat: tuple[float, ...]
    gyro: tuple[float, ...]
    accel: tuple[float, ...]

    @property
    def torque_on(self) -> bool:
        return bool(self.status & Status.TORQUE_ON)

    @property
    def faulted(self) -> bool:
        """Error flags set or e-stop active: never drive the robot from this state."""
        return bool(self.errors) or bool(self.status & Status.ESTOP)

    def pack(self) -> bytes:
        n = _joint_count(self.TYPE, len(self.q))
        _same_len(self.TYPE, "q", n, dq=self.dq)
        _fixed(self.TYPE, "quat", self.quat, 4)
        _fixed(self.TYPE, "gyro", self.gyro, 3)
        _fixed(self.TYPE, "accel", self.accel, 3)
        try:
            head = _STATE_HEAD.pack(self.timestamp_us, self.status, self.errors, self.fault_joints, n)
        except struct.error as exc:
            raise BadValue(f"STATE field out of range: {exc}") from None
        return head + _floats(2 * n + 10).pack(*self.q, *self.dq, *self.quat, *self.gyro, *self.accel)

    @classmethod
    def unpack(cls, payload: bytes) -> State:
        _need_at_least(cls.TYPE, payload, _STATE_HEAD.size)
        ts, status, errors, fault_joints, n = _STATE_HEAD.unpack_from(payload)
        _joint_count(cls.TYPE, n)
        _need(cls.TYPE, payload, _STATE_HEAD.size + 4 * (2 * n + 10), f"for {n} joints")
        v = _floats(2 * n + 10).unpack_from(payload, _STATE_HEAD.size)
        return cls(ts, status, errors, fault_joints, v[:n], v[n:2 * n], v[2 * n:2 * n + 4],
                   v[2 * n + 4:2 * n + 7], v[2 * n + 7:])


_ACK = struct.Struct("<QHH")


@dataclass(frozen=True)
class HeartbeatAck(_Message):
    """Reply to HEARTBEAT. Payload: u64 timestamp_us, u16 status, u16 errors."""
    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT_ACK
    timestamp_us: int
    status: int
    errors: int

    def pack(self) -> bytes:
        try:
            return _ACK.pack(self.timestamp_us, self.status, self.errors)
        except struct.error as exc:
            raise BadValue(f"HEARTBEAT_ACK field out of range: {exc}") from None

    @classmethod
    def unpack(cls, payload: bytes) -> HeartbeatAck:
        _need(cls.TYPE, payload, _ACK.size)
        return cls(*_ACK.unpack(payload))


@dataclass(frozen=True)
class Error(_Message):
    """The robot refuses a request (tag = the request's) or reports on its own (tag 0).

    Payload: u16 code (ErrorCode), u8 request_type, u8 detail length, detail UTF-8 (<= 200 bytes).
    Its layout, like the header's, never changes between protocol versions.
    """
    TYPE: ClassVar[MsgType] = MsgType.ERROR
    code: int
    request_type: int
    detail: str = ""

    def pack(self) -> bytes:
        try:
            head = struct.pack("<HB", self.code, self.request_type)
        except struct.error as exc:
            raise BadValue(f"ERROR field out of range: {exc}") from None
        return head + _pack_name(self.TYPE, "detail", self.detail, MAX_DETAIL)

    @classmethod
    def unpack(cls, payload: bytes) -> Error:
        _need_at_least(cls.TYPE, payload, 4)
        code, req = struct.unpack_from("<HB", payload)
        detail, end = _unpack_name(cls.TYPE, "detail", payload, 3)
        _need(cls.TYPE, payload, end, f"for a {end - 4}-byte detail")
        return cls(code, req, detail)

    def describe(self) -> str:
        try:
            code = ErrorCode(self.code).name
        except ValueError:
            code = f"code {self.code}"
        try:
            req = MsgType(self.request_type).name
        except ValueError:
            req = f"0x{self.request_type:02X}"
        return f"{code} for {req}" + (f": {self.detail}" if self.detail else "")


_TRUTH = struct.Struct("<d13fB")


@dataclass(frozen=True)
class SimGroundTruth(_Message):
    """MOCK-ONLY. What only the simulator knows, for gap measurement and tests.

    Payload: f64 sim_time_s, f32 base_pos[3] (m, world), f32 base_quat[4] (wxyz, world),
    f32 base_lin_vel[3] (m/s, world), f32 base_ang_vel[3] (rad/s, body), u8 fallen (0/1).
    """
    TYPE: ClassVar[MsgType] = MsgType.SIM_GROUND_TRUTH
    sim_time_s: float
    base_pos: tuple[float, ...]
    base_quat: tuple[float, ...]
    base_lin_vel: tuple[float, ...]
    base_ang_vel: tuple[float, ...]
    fallen: bool

    def pack(self) -> bytes:
        for name, n in (("base_pos", 3), ("base_quat", 4), ("base_lin_vel", 3), ("base_ang_vel", 3)):
            _fixed(self.TYPE, name, getattr(self, name), n)
        return _TRUTH.pack(self.sim_time_s, *self.base_pos, *self.base_quat, *self.base_lin_vel,
                           *self.base_ang_vel, 1 if self.fallen else 0)

    @classmethod
    def unpack(cls, payload: bytes) -> SimGroundTruth:
        _need(cls.TYPE, payload, _TRUTH.size)
        v = _TRUTH.unpack(payload)
        return cls(v[0], v[1:4], v[4:8], v[8:11], v[11:14], _flag(cls.TYPE, "fallen", v[14]))


Message = Union[Hello, GetState, Command, Torque, Hold, Damp, Heartbeat, ClearErrors, SimReset,
                SimGetGroundTruth, Info, State, HeartbeatAck, Error, SimGroundTruth]
MESSAGES: dict[int, type] = {cls.TYPE: cls for cls in (
    Hello, GetState, Command, Torque, Hold, Damp, Heartbeat, ClearErrors, SimReset, SimGetGroundTruth,
    Info, State, HeartbeatAck, Error, SimGroundTruth)}


# --------------------------------------------------------------------------- frames

@dataclass(frozen=True)
class Frame:
    """One decoded frame: the request tag (echoed by replies; 0 = unsolicited) and the message."""
    tag: int
    msg: Message


def encode(msg: Message, tag: int, *, version: int = PROTOCOL_VERSION) -> bytes:
    """The whole frame, both delimiters included. Raises FrameTooLong / BadValue; never writes a partial frame."""
    if not 0 <= tag <= 0xFFFF:
        raise BadValue(f"tag {tag} is not a u16")
    payload = msg.pack()
    if len(payload) > MAX_PAYLOAD:
        raise FrameTooLong(f"{msg.TYPE.name} payload is {len(payload)} bytes, MAX_PAYLOAD is {MAX_PAYLOAD}")
    body = HEADER.pack(version, msg.TYPE, tag, len(payload)) + payload
    return b"\x00" + cobs_encode(body + CRC.pack(crc32(body))) + b"\x00"


def decode_body(encoded: bytes) -> Frame:
    """Decode the COBS-encoded bytes between two delimiters. Raises a ProtocolError subclass."""
    if len(encoded) > MAX_ENCODED:
        raise FrameTooLong(f"frame of {len(encoded)} encoded bytes exceeds MAX_ENCODED={MAX_ENCODED}")
    body = cobs_decode(encoded)
    if len(body) > MAX_BODY:          # the encoding fits MAX_ENCODED only because the body has zeros
        raise FrameTooLong(f"frame body of {len(body)} bytes exceeds MAX_BODY={MAX_BODY} "
                           f"(payload above MAX_PAYLOAD={MAX_PAYLOAD})")
    if len(body) < HEADER.size + CRC.size:
        raise FramingError(f"frame of {len(body)} bytes is shorter than header + CRC "
                           f"({HEADER.size + CRC.size}): {body.hex(' ')}")
    (crc,) = CRC.unpack_from(body, len(body) - CRC.size)
    if crc32(body[:-CRC.size]) != crc:
        raise CrcError(f"CRC mismatch in a {len(body)}-byte frame (got 0x{crc:08X}, "
                       f"computed 0x{crc32(body[:-CRC.size]):08X})")
    version, msg_type, tag, length = HEADER.unpack_from(body)
    try:
        if version != PROTOCOL_VERSION:
            raise VersionMismatch(version, msg_type, tag)
        payload = body[HEADER.size:-CRC.size]
        if length != len(payload):
            raise BadLength(f"header says {length} payload bytes, frame carries {len(payload)} "
                            f"(type 0x{msg_type:02X}, tag {tag})", msg_type, len(payload), length)
        cls = MESSAGES.get(msg_type)
        if cls is None:
            raise UnknownMessage(msg_type, tag)
        return Frame(tag, cls.unpack(payload))
    except ProtocolError as exc:      # the header passed its CRC: say which request this was
        exc.tag, exc.msg_type = tag, msg_type
        raise


def decode(frame: bytes) -> Frame:
    """Decode one whole frame as encode() returns it (delimiters optional)."""
    frame = bytes(frame)
    if frame[:1] == b"\x00":
        frame = frame[1:]
    if frame[-1:] == b"\x00":
        frame = frame[:-1]
    return decode_body(frame)


@dataclass
class DecoderStats:
    """What a FrameDecoder has seen since it was made (reset() keeps these)."""
    frames: int = 0               # valid frames returned
    crc_errors: int = 0
    framing_errors: int = 0       # malformed COBS / runt frames
    too_long: int = 0             # frames longer than MAX_FRAME, dropped unbuffered
    bad_length: int = 0
    unknown_type: int = 0
    version_mismatch: int = 0
    bad_value: int = 0
    bytes_discarded: int = 0      # bytes that were not part of a valid frame (delimiters excluded)

    @property
    def errors(self) -> int:
        """Damaged or unusable frames, whatever the reason."""
        return (self.crc_errors + self.framing_errors + self.too_long + self.bad_length + self.unknown_type
                + self.version_mismatch + self.bad_value)


class FrameDecoder:
    """Streaming decoder: feed() any chunking of the byte stream, get whole frames or typed errors.

    Bytes before the first delimiter are discarded (they may be the tail of a frame we joined
    midway). The buffer never holds more than MAX_ENCODED bytes: a longer run is dropped as it
    arrives and reported once, as FrameTooLong, at its closing delimiter.
    """

    def __init__(self) -> None:
        self.stats = DecoderStats()
        self._buf = bytearray()
        self._synced = False
        self._overflow = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        """Forget any partial frame and wait for the next delimiter (after the input was flushed)."""
        self.stats.bytes_discarded += len(self._buf)
        self._buf.clear()
        self._synced = self._overflow = False

    def feed(self, data: bytes) -> list[Frame | ProtocolError]:
        out: list[Frame | ProtocolError] = []
        stats, buf = self.stats, self._buf
        start, n = 0, len(data)
        while start <= n:
            z = data.find(DELIMITER, start)
            stop = n if z < 0 else z
            if stop > start:
                if not self._synced or self._overflow:
                    stats.bytes_discarded += stop - start
                elif len(buf) + stop - start > MAX_ENCODED:
                    stats.bytes_discarded += len(buf) + stop - start
                    buf.clear()
                    self._overflow = True
                else:
                    buf += data[start:stop]
            if z < 0:
                break
            if self._overflow:
                out.append(FrameTooLong(f"frame longer than MAX_FRAME={MAX_FRAME} bytes dropped"))
                stats.too_long += 1
                self._overflow = False
            elif buf:
                try:
                    out.append(decode_body(bytes(buf)))
                    stats.frames += 1
                except ProtocolError as exc:
                    out.append(exc)
                    setattr(stats, exc.counter, getattr(stats, exc.counter) + 1)
                    stats.bytes_discarded += len(buf)
                buf.clear()
            self._synced = True
            start = z + 1
        return out


# --------------------------------------------------------------------------- timing (docs/protocol.md section 9)

BITS_PER_BYTE = 10                     # UART: start + 8 data + stop
HOST_MARGIN_S = 0.002                  # host side: a USB-serial latency timer at 1 ms + OS wake-up


def transaction_bytes(n_joints: int) -> int:
    """Bytes on the wire for the longest cycle transaction: COMMAND with gain scales -> STATE.
    COBS adds a byte per 254, so the worst case is taken over payload values (zeros here)."""
    zeros = (0.0,) * n_joints
    command = encode(Command(zeros, (1.0,) * n_joints, (1.0,) * n_joints), 0xFFFF)
    state = encode(State(0, 0, 0, 0, zeros, zeros, (1.0, 0.0, 0.0, 0.0), (0.0,) * 3, (0.0,) * 3), 0xFFFF)
    return len(command) + len(state) + 2 * (MAX_PAYLOAD // 254 + 1)


def reply_timeout_s(n_joints: int, baudrate: int, reply_time_s: float, margin_s: float = HOST_MARGIN_S) -> float:
    """One attempt's timeout: both frames' wire time at `baudrate` + the device's stated worst
    turnaround (last request byte in -> first reply byte out) + the host's own margin."""
    return transaction_bytes(n_joints) * BITS_PER_BYTE / baudrate + reply_time_s + margin_s
