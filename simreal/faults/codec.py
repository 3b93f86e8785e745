"""Codec drills (docs/faults.md F1-F7): mutated frames of every message type, fed to the decoder.

Each mutant is fed to a fresh FrameDecoder followed by a valid frame (NEXT), so a class checks
three things at once: the mutant is never accepted (a false accept: any frame but NEXT comes
out), the decoder resynchronizes (NEXT still comes out: "lost" otherwise), and only the
protocol's typed errors escape ("untyped": any other exception). The samples cover all 15
message types at 13 to ~500 bytes on the wire. Mutants are seeded; `scale` sets the counts
(1.0: the full run, > 10^6 mutants).
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Callable, Iterator

from simreal import protocol as P

NAMES32 = tuple(f"joint_{k:02d}_serv" for k in range(32))     # 32 x 13 bytes: INFO near MAX_PAYLOAD


def samples() -> list[tuple[P.Message, int]]:
    """(message, tag) of every type, small and large."""
    S, C = P.Status, P.Capability
    q12 = tuple(0.1 * k - 0.5 for k in range(12))
    q32 = tuple(0.03 * k - 0.4 for k in range(32))

    def state(q: tuple[float, ...]) -> P.State:
        return P.State(1_020_000, S.TORQUE_ON | S.CALIBRATED, 0, 0, q, tuple(x / 2 for x in q),
                       (1.0, 0.0, 0.0, 0.0), (0.01, -0.02, 0.5), (0.0, 0.1, 9.75))
    return [
        (P.Hello(), 1), (P.GetState(), 2), (P.Hold(), 3), (P.Damp(), 4), (P.Heartbeat(), 5),
        (P.ClearErrors(), 6), (P.SimGetGroundTruth(), 7), (P.Torque(True), 8), (P.Torque(False), 9),
        (P.Info("quadruped", tuple(f"j{k}" for k in range(12)), (1, 2, 3), watchdog_ms=200,
                capabilities=C.SIMULATED | C.GAINS), 10),
        (P.Info("a_robot_with_a_long_name", NAMES32, watchdog_ms=500), 0xFFFF),
        (state(q12), 11), (state(q32), 12),
        (P.Command(q12), 13), (P.Command(q32, (1.0,) * 32, (0.5,) * 32), 14),
        (P.HeartbeatAck(2_000_000, S.TORQUE_ON, 0), 15),
        (P.Error(P.ErrorCode.REFUSED, P.MsgType.CLEAR_ERRORS, "overheat on joint 3"), 16),
        (P.SimReset(), 17), (P.SimReset(42, q12, (0.0, 0.0, 0.25), (1.0, 0.0, 0.0, 0.0)), 18),
        (P.SimGroundTruth(12.5, (1.0, 0.0, 0.25), (1.0, 0.0, 0.0, 0.0), (0.5, 0.0, 0.0),
                          (0.0, 0.0, 0.125), False), 19),
    ]


@dataclass(frozen=True)
class CodecRun:
    cls: str                  # F-row and mutation
    mutants: int
    rejected: int             # no frame but NEXT came out
    false_accepts: int        # a frame other than NEXT came out
    lost: int                 # NEXT did not come out: the decoder failed to resynchronize
    untyped: int              # an exception that is not a protocol error escaped

    @property
    def passed(self) -> bool:
        return self.false_accepts == 0 and self.untyped == 0 and self.lost == 0


NEXT_MSG = P.State(7, 1, 0, 0, (0.25,), (0.5,), (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 9.75))
NEXT = P.encode(NEXT_MSG, 99)


def _feed(stream: bytes) -> tuple[list[P.Frame], bool]:
    """Frames decoded from `stream + NEXT`, and whether an untyped exception escaped."""
    dec = P.FrameDecoder()
    try:
        items = dec.feed(stream) + dec.feed(NEXT)
    except P.ProtocolError:
        return [], False
    except Exception:                       # noqa: BLE001 - counting exactly these is the point
        return [], True
    return [x for x in items if isinstance(x, P.Frame)], False


def _tally(cls: str, mutants: Iterator[bytes], allowed: Callable[[P.Frame], bool] = lambda f: False) -> CodecRun:
    n = rejected = false = lost = untyped = 0
    for m in mutants:
        n += 1
        frames, bad = _feed(m)
        untyped += bad
        if bad:
            continue
        ok_next = bool(frames) and frames[-1].tag == 99 and frames[-1].msg == NEXT_MSG
        others = [f for f in (frames[:-1] if ok_next else frames) if not allowed(f)]
        lost += not ok_next
        false += bool(others)
        rejected += not others
    return CodecRun(cls, n, rejected, false, lost, untyped)


def _body(frame: bytes) -> bytes:
    return P.cobs_decode(frame[1:-1])


def _frame(body: bytes) -> bytes:
    return b"\x00" + P.cobs_encode(body) + b"\x00"


def run(scale: float = 1.0, seed: int = 0) -> list[CodecRun]:
    """Every class; `scale` multiplies the random classes' counts (exhaustive ones are always whole)."""
    rng = random.Random(seed)
    frames = [P.encode(m, t) for m, t in samples()]

    def pick() -> bytes:
        return frames[rng.randrange(len(frames))]

    def count(full: int) -> int:
        return max(1, int(full * scale))

    def single_bits() -> Iterator[bytes]:
        for f in frames:
            for i in range(len(f)):
                for bit in range(8):
                    m = bytearray(f)
                    m[i] ^= 1 << bit
                    yield bytes(m)

    def multi_bits() -> Iterator[bytes]:
        for _ in range(count(400_000)):
            f = bytearray(pick())
            before = bytes(f)
            for _ in range(rng.choice((2, 3))):
                f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
            if bytes(f) != before:          # two flips of the same bit cancel: not a mutant
                yield bytes(f)

    def bursts() -> Iterator[bytes]:
        for _ in range(count(400_000)):
            f = pick()
            width = rng.randint(2, 16)
            pattern = rng.getrandbits(width) | 1 | (1 << (width - 1))
            start = rng.randrange(len(f) * 8 - width)
            yield (int.from_bytes(f, "little") ^ (pattern << start)).to_bytes(len(f), "little")

    def overwrites() -> Iterator[bytes]:         # hostile: 1-8 bytes replaced by random ones
        for _ in range(count(150_000)):
            f = bytearray(pick())
            before = bytes(f)
            for _ in range(rng.randint(1, 8)):
                f[rng.randrange(len(f))] = rng.randrange(256)
            if bytes(f) != before:
                yield bytes(f)

    def truncations() -> Iterator[bytes]:        # F1: every cut that leaves the frame unclosed
        for f in frames:
            for k in range(1, len(f) - 1):
                yield f[:k]

    def swaps() -> Iterator[bytes]:              # F3: adjacent body bytes exchanged, re-stuffed
        for f in frames:
            body = _body(f)
            for i in range(len(body) - 1):
                if body[i] != body[i + 1]:
                    b = bytearray(body)
                    b[i], b[i + 1] = b[i + 1], b[i]
                    yield _frame(bytes(b))

    def lengths() -> Iterator[bytes]:            # F4: a forged length field under a valid CRC
        for f in frames:
            body = _body(f)
            version, msg_type, tag, length = P.HEADER.unpack_from(body)
            payload = body[P.HEADER.size:-P.CRC.size]
            for forged in {0, 1, length - 1, length + 1, P.MAX_PAYLOAD, P.MAX_PAYLOAD + 1, 0xFFFF,
                           rng.randrange(0x10000)} - {length, -1}:
                head = P.HEADER.pack(version, msg_type, tag, forged) + payload
                yield _frame(head + struct.pack("<I", P.crc32(head)))

    def oversized() -> Iterator[bytes]:          # F7: runs longer than any frame, then a delimiter
        for _ in range(count(2_000)):
            n = P.MAX_ENCODED + rng.randint(1, 4 * P.MAX_ENCODED)
            yield b"\x00" + bytes(rng.randrange(1, 256) for _ in range(n)) + b"\x00"

    runs = [
        _tally("F1 truncated at every byte", truncations()),
        _tally("F2 every single bit flipped", single_bits()),
        _tally("F2 2-3 random bit flips", multi_bits()),
        _tally("F2 bursts of 2-16 bits", bursts()),
        _tally("F2 1-8 bytes overwritten", overwrites()),
        _tally("F3 adjacent bytes swapped", swaps()),
        _tally("F4 length forged, CRC valid", lengths()),
        _tally("F7 oversized run", oversized()),
        _garbage(frames, rng, count(60_000)),
        _roundtrip(rng, count(100_000)),
    ]
    return runs


def _garbage(frames: list[bytes], rng: random.Random, n: int) -> CodecRun:
    """F5: frame A, 1-64 bytes of garbage (delimiters and fake headers included), frame B: at most
    the frame next to the burst may be lost, and nothing but A and B may come out."""
    false = lost = untyped = 0
    for _ in range(n):
        a, b = frames[rng.randrange(len(frames))], frames[rng.randrange(len(frames))]
        junk = bytearray(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        if rng.random() < 0.3:                 # a fake header: version byte, a real type, a length
            junk[rng.randrange(len(junk)):][:4] = bytes((P.PROTOCOL_VERSION, 0x82, 1, 0))
        if rng.random() < 0.5:
            junk[rng.randrange(len(junk))] = 0
        dec = P.FrameDecoder()
        try:
            items = dec.feed(a) + dec.feed(bytes(junk)) + dec.feed(b)
        except P.ProtocolError:
            items = []
        except Exception:                      # noqa: BLE001
            untyped += 1
            continue
        got = [bytes(P.encode(x.msg, x.tag)) for x in items if isinstance(x, P.Frame)]
        false += any(g not in (a, b) for g in got)
        lost += len(got) < 1                   # a burst may cost the frame it touches, not both
    return CodecRun("F5 garbage between frames", n, n - false, false, lost, untyped)


def _roundtrip(rng: random.Random, n: int) -> CodecRun:
    """F6: COBS round trip of random bytes, all 0x00, all 0xFF and delimiter runs; a mismatch or a
    0x00 in the encoding counts as a false accept (the bytes came back different)."""
    false = untyped = 0
    for k in range(n):
        size = rng.randrange(P.MAX_BODY + 1)
        kind = k % 4
        data = (bytes(rng.randrange(256) for _ in range(size)) if kind == 0 else
                b"\x00" * size if kind == 1 else b"\xff" * size if kind == 2 else
                bytes(rng.choice((0, 0, 0xFF, rng.randrange(256))) for _ in range(size)))
        try:
            enc = P.cobs_encode(data)
            false += 0 in enc or P.cobs_decode(enc) != data
        except Exception:                      # noqa: BLE001
            untyped += 1
    return CodecRun("F6 COBS round trip", n, n - false, false, 0, untyped)
