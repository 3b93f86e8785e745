"""Dynamixel Protocol 2.0 (X-series servos), both directions.

    FF FF FD 00 id len_lo len_hi instr params... crc_lo crc_hi
    status packets: instr 0x55, then the error byte, then the data

CRC-16 (polynomial 0x8005, initial 0, not reflected: CRC-16/UMTS) over everything before it,
header included. Byte stuffing: wherever FF FF FD appears in instruction + parameters, an FD is
inserted after it, so a header never appears inside a packet; the length counts stuffed bytes.
Multi-byte registers are little-endian two's complement. Like Feetech, a reply carries no request
tag: see simreal.deploy.servo_link for how the link keeps stale replies out.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Mapping, Sequence

from simreal.hardware.packets import DecodeStats, Packet, PacketError, u16

FAMILY = "dynamixel"
HEADER = b"\xff\xff\xfd\x00"
BROADCAST_ID = 0xFE
MAX_ID = 0xFC
MAX_LENGTH = 1024            # our bound on a packet's length field (the protocol allows 65535)
STATUS = 0x55


class Instr(IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    STATUS = 0x55
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83
    BULK_READ = 0x92
    BULK_WRITE = 0x93


class Error(IntEnum):
    """Status packet error byte, bits 0-6 (bit 7: a hardware error is latched, see register 70)."""
    RESULT_FAIL = 1
    INSTRUCTION = 2
    CRC = 3
    DATA_RANGE = 4
    DATA_LENGTH = 5
    DATA_LIMIT = 6
    ACCESS = 7


ALERT = 0x80


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0) -> int:
    for b in data:
        crc = ((crc << 8) ^ _TABLE[((crc >> 8) ^ b) & 0xFF]) & 0xFFFF
    return crc


def stuff(data: bytes) -> bytes:
    """Insert FD after every FF FF FD."""
    out = bytearray()
    run = 0                       # how far into FF FF FD the tail of `out` is
    for b in data:
        out.append(b)
        if run == 2 and b == 0xFD:
            out.append(0xFD)
            run = 0
        elif b == 0xFF:
            run = 2 if run >= 1 else 1
        else:
            run = 0
    return bytes(out)


def unstuff(data: bytes) -> bytes:
    return data.replace(b"\xff\xff\xfd\xfd", b"\xff\xff\xfd")


def _packet(servo_id: int, instr: int, params: bytes) -> bytes:
    if not 0 <= servo_id <= BROADCAST_ID:
        raise PacketError(f"servo id {servo_id} outside 0-{BROADCAST_ID}")
    body = stuff(bytes([instr]) + bytes(params))
    if len(body) + 2 > MAX_LENGTH:
        raise PacketError(f"packet of {len(body) + 2} bytes, at most {MAX_LENGTH}")
    head = HEADER + bytes([servo_id]) + u16(len(body) + 2)
    crc = crc16(head + body)
    return head + body + u16(crc)


def instruction(servo_id: int, instr: int, params: bytes = b"") -> bytes:
    return _packet(servo_id, instr, params)


def status(servo_id: int, error: int, params: bytes = b"") -> bytes:
    return _packet(servo_id, STATUS, bytes([error]) + bytes(params))


def ping(servo_id: int) -> bytes:
    return instruction(servo_id, Instr.PING)


def read(servo_id: int, address: int, length: int) -> bytes:
    return instruction(servo_id, Instr.READ, u16(address) + u16(length))


def write(servo_id: int, address: int, data: bytes) -> bytes:
    return instruction(servo_id, Instr.WRITE, u16(address) + data)


def sync_read(address: int, length: int, ids: Sequence[int]) -> bytes:
    """Each listed servo answers with its own status packet, in the listed order."""
    return instruction(BROADCAST_ID, Instr.SYNC_READ, u16(address) + u16(length) + bytes(ids))


def sync_write(address: int, length: int, data: Mapping[int, bytes]) -> bytes:
    params = bytearray(u16(address) + u16(length))
    for sid, chunk in data.items():
        if len(chunk) != length:
            raise PacketError(f"sync write: servo {sid} has {len(chunk)} bytes, not {length}")
        params += bytes([sid]) + chunk
    return instruction(BROADCAST_ID, Instr.SYNC_WRITE, bytes(params))


def reply_length(n_params: int) -> int:
    """Bytes on the wire for a status packet with n_params data bytes (before any stuffing)."""
    return 11 + n_params


class Decoder:
    """Bytes in, packets out (status packets when `status`, instructions otherwise; the other kind
    is dropped as a bus echo). A bad CRC or length drops the packet and resyncs past its header."""

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
                keep = next((k for k in (3, 2, 1) if buf.endswith(HEADER[:k])), 0)
                self.stats.discarded_bytes += len(buf) - keep
                del buf[:len(buf) - keep]
                return out
            if start:
                self.stats.discarded_bytes += start
                del buf[:start]
            if len(buf) < 7:
                return out
            length = buf[5] | buf[6] << 8
            if length < 3 or length > MAX_LENGTH or buf[4] > BROADCAST_ID:
                self.stats.bad_length += 1
                self.stats.discarded_bytes += 4
                del buf[:4]
                continue
            end = 7 + length
            if len(buf) < end:
                return out
            if crc16(bytes(buf[:end - 2])) != (buf[end - 2] | buf[end - 1] << 8):
                self.stats.checksum_errors += 1
                self.stats.discarded_bytes += 4
                del buf[:4]
                continue
            servo_id, body = buf[4], unstuff(bytes(buf[7:end - 2]))
            del buf[:end]
            is_status = body[0] == STATUS
            if is_status != self.status or (is_status and len(body) < 2):
                continue
            self.stats.packets += 1
            if is_status:
                out.append(Packet(servo_id, body[1], body[2:], True))
            else:
                out.append(Packet(servo_id, body[0], body[1:], False))
