"""Feetech SCS/STS serial bus protocol (the "FT-SCS" protocol of the STS3215), both directions.

    instruction: FF FF id len instr params... chk     len = len(params) + 2
    status:      FF FF id len error params... chk     chk = ~(id + len + code + sum(params)) & 0xFF

An 8-bit additive checksum, no request tag: a late reply from the same servo for the same read is
indistinguishable from the awaited one, which is why the link flushes input before each request
and waits out a quiet period after a timeout (simreal.deploy.servo_link). Multi-byte registers are
little-endian on STS (SCS servos are big-endian: not supported here). Signed STS registers use a
sign bit (sign-magnitude), not two's complement: see simreal.hardware.servo_models.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Mapping, Sequence

from simreal.hardware.packets import DecodeStats, Packet, PacketError

FAMILY = "feetech"
HEADER = b"\xff\xff"
BROADCAST_ID = 0xFE
MAX_ID = 0xFD
MAX_PARAMS = 250
STATUS_OVERHEAD = 6          # FF FF id len error ... chk


class Instr(IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    RESET = 0x06
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83


def checksum(body: bytes) -> int:
    """~(sum of id, length, instruction/error and parameters) & 0xFF."""
    return ~sum(body) & 0xFF


def _packet(servo_id: int, code: int, params: bytes) -> bytes:
    if not 0 <= servo_id <= BROADCAST_ID:
        raise PacketError(f"servo id {servo_id} outside 0-{BROADCAST_ID}")
    if len(params) > MAX_PARAMS:
        raise PacketError(f"{len(params)} parameter bytes, at most {MAX_PARAMS}")
    body = bytes([servo_id, len(params) + 2, code & 0xFF]) + bytes(params)
    return HEADER + body + bytes([checksum(body)])


def instruction(servo_id: int, instr: int, params: bytes = b"") -> bytes:
    return _packet(servo_id, instr, params)


def status(servo_id: int, error: int, params: bytes = b"") -> bytes:
    return _packet(servo_id, error, params)


def ping(servo_id: int) -> bytes:
    return instruction(servo_id, Instr.PING)


def read(servo_id: int, address: int, length: int) -> bytes:
    return instruction(servo_id, Instr.READ, bytes([address, length]))


def write(servo_id: int, address: int, data: bytes) -> bytes:
    return instruction(servo_id, Instr.WRITE, bytes([address]) + data)


def sync_read(address: int, length: int, ids: Sequence[int]) -> bytes:
    """Each listed servo answers with its own status packet, in the listed order."""
    return instruction(BROADCAST_ID, Instr.SYNC_READ, bytes([address, length, *ids]))


def sync_write(address: int, length: int, data: Mapping[int, bytes]) -> bytes:
    """One packet, no reply: `length` bytes at `address` for each servo id."""
    params = bytearray([address, length])
    for sid, chunk in data.items():
        if len(chunk) != length:
            raise PacketError(f"sync write: servo {sid} has {len(chunk)} bytes, not {length}")
        params += bytes([sid]) + chunk
    return instruction(BROADCAST_ID, Instr.SYNC_WRITE, bytes(params))


def reply_length(n_params: int) -> int:
    """Bytes on the wire for a status packet with n_params data bytes."""
    return STATUS_OVERHEAD + n_params


class Decoder:
    """Bytes in, packets out. `status=True` on the host (it reads status packets), False on the
    servo side. A bad checksum or an impossible length drops the packet and resyncs one byte on,
    so garbage costs at most the packets it overlaps."""

    def __init__(self, *, status: bool):
        self.status = status
        self.buf = bytearray()
        self.stats = DecodeStats()

    def reset(self) -> None:
        self.buf.clear()

    def feed(self, data: bytes) -> list[Packet]:
        self.buf += data
        out: list[Packet] = []
        buf = self.buf
        while True:
            start = buf.find(HEADER)
            if start < 0:
                keep = 1 if buf.endswith(b"\xff") else 0
                self.stats.discarded_bytes += len(buf) - keep
                del buf[:len(buf) - keep]
                return out
            # FF FF FF id...: the header is the last two FFs before a non-FF id byte
            while start + 2 < len(buf) and buf[start + 2] == 0xFF:
                start += 1
            if start:
                self.stats.discarded_bytes += start
                del buf[:start]
            if len(buf) < 4:
                return out
            length = buf[3]
            if length < 2 or length > MAX_PARAMS + 2 or buf[2] > BROADCAST_ID:
                self.stats.bad_length += 1
                self.stats.discarded_bytes += 1
                del buf[:1]
                continue
            end = 4 + length
            if len(buf) < end:
                return out
            body = bytes(buf[2:end - 1])
            if checksum(body) != buf[end - 1]:
                self.stats.checksum_errors += 1
                self.stats.discarded_bytes += 1
                del buf[:1]
                continue
            del buf[:end]
            self.stats.packets += 1
            out.append(Packet(body[0], body[2], body[3:], self.status))
