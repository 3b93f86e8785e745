"""What the two servo-bus codecs share: the decoded packet and the decoder's counters.

Both protocols are request/response on a half-duplex bus with no request tag: a reply names only
the servo that sent it. So the decoder's job stops at "this is a well-formed packet from servo N";
whether it answers the request in flight is the link's job (simreal.deploy.servo_link).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Packet:
    """One decoded packet. `code` is the instruction (host -> servo) or, in a status packet
    (servo -> host), the servo's error byte."""
    servo_id: int
    code: int
    params: bytes
    status: bool


@dataclass
class DecodeStats:
    packets: int = 0
    checksum_errors: int = 0     # a complete packet whose checksum/CRC is wrong: dropped
    bad_length: int = 0          # a header whose length field cannot be right: resync past it
    discarded_bytes: int = 0     # bytes skipped looking for a header

    @property
    def errors(self) -> int:
        return self.checksum_errors + self.bad_length


class PacketError(Exception):
    """A packet could not be built (an argument out of range)."""


def u16(v: int) -> bytes:
    return int(v & 0xFFFF).to_bytes(2, "little")
