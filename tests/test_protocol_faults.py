"""Damaged, cut, padded, oversized and foreign frames (faults.md F1-F8): rejected, typed, resynchronized."""
from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from simreal import protocol as P
from test_protocol_golden import GOLDEN

FRAMES = [bytes.fromhex(g[3]) for g in GOLDEN]
NEXT = P.encode(P.State(7, 1, 0, 0, (0.25,), (0.5,), (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 9.75)), 99)
NEXT_FRAME = P.decode(NEXT)


def frames_in(items):
    return [x for x in items if isinstance(x, P.Frame)]


def errors_in(items):
    return [x for x in items if not isinstance(x, P.Frame)]


def frame_of(body: bytes) -> bytes:
    return b"\x00" + P.cobs_encode(body) + b"\x00"


def with_crc(header_and_payload: bytes) -> bytes:
    return frame_of(header_and_payload + struct.pack("<I", P.crc32(header_and_payload)))


# ---------------------------------------------------------------- F2/F3 damage


def test_every_single_bit_flip_of_every_golden_frame_is_rejected():
    mutants = 0
    for frame in FRAMES:
        for i in range(len(frame)):
            for bit in range(8):
                m = bytearray(frame)
                m[i] ^= 1 << bit
                dec = P.FrameDecoder()
                out = dec.feed(bytes(m)) + dec.feed(NEXT)
                assert frames_in(out) == [NEXT_FRAME], (frame.hex(" "), i, bit)
                with pytest.raises(P.ProtocolError):
                    P.decode(bytes(m))
                mutants += 1
    assert mutants == 8 * sum(map(len, FRAMES))


def _mutate(frame: bytes, positions: list[int], bits: list[int]) -> bytes:
    m = bytearray(frame)
    for pos, bit in zip(positions, bits):
        m[pos % len(m)] ^= 1 << bit
    return bytes(m)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FRAMES), st.lists(st.integers(0, 10_000), min_size=2, max_size=3),
       st.lists(st.integers(0, 7), min_size=3, max_size=3))
def test_two_and_three_bit_errors_are_rejected(frame, positions, bits):
    m = _mutate(frame, positions, bits)
    if m == frame:                    # two flips of the same bit cancel out
        return
    assert frames_in(P.FrameDecoder().feed(m)) == []


def _burst(frame: bytes, start: int, pattern: int, width: int) -> bytes:
    # XOR a burst of `width` bits (first and last bit set) into the frame at bit offset `start`.
    pattern = (pattern & ((1 << width) - 1)) | 1 | (1 << (width - 1))
    as_int = int.from_bytes(frame, "little") ^ (pattern << start)
    return as_int.to_bytes(len(frame), "little")


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(FRAMES), st.integers(0, 10_000), st.integers(0, 2**16), st.integers(2, 16))
def test_bursts_up_to_16_bits_are_rejected(frame, start, pattern, width):
    start %= len(frame) * 8 - width
    assert frames_in(P.FrameDecoder().feed(_burst(frame, start, pattern, width))) == []


@pytest.mark.slow
def test_one_million_random_mutants_no_false_accept():
    # faults.md F2: >= 10^6 mutants (2-3 bit flips and bursts <= 16 bits), zero accepted.
    rng = random.Random(20240601)
    accepted = 0
    for k in range(1_000_000):
        frame = FRAMES[k % len(FRAMES)]
        if k % 2:
            n = rng.choice((2, 3))
            m = _mutate(frame, [rng.randrange(len(frame)) for _ in range(n)], [rng.randrange(8) for _ in range(n)])
        else:
            width = rng.randint(2, 16)
            m = _burst(frame, rng.randrange(len(frame) * 8 - width), rng.getrandbits(16), width)
        if m != frame and frames_in(P.FrameDecoder().feed(m)):
            accepted += 1
    assert accepted == 0


def test_adjacent_byte_swaps_are_rejected():
    # faults.md F3: transposed bytes, re-stuffed so that the framing is intact: only the CRC can tell.
    swaps = 0
    for frame in FRAMES:
        body = P.cobs_decode(frame[1:-1])
        for i in range(len(body) - 1):
            if body[i] == body[i + 1]:
                continue
            b = bytearray(body)
            b[i], b[i + 1] = b[i + 1], b[i]
            with pytest.raises(P.CrcError) as exc:
                P.decode(frame_of(bytes(b)))
            assert exc.value.tag is None         # nothing from a frame that failed its CRC is trusted
            swaps += 1
    assert swaps > 200


# ---------------------------------------------------------------- F1 truncation


@pytest.mark.parametrize("frame", FRAMES, ids=[g[0] + f"-{g[2]:04x}" for g in GOLDEN])
def test_truncation_at_every_byte_never_yields_a_frame(frame):
    for k in range(len(frame)):
        assert frames_in(P.FrameDecoder().feed(frame[:k])) == []
        out = P.FrameDecoder().feed(frame[:k] + NEXT)
        # A cut just before the closing delimiter leaves a whole frame, closed by the next one's opener.
        expected = [P.decode(frame), NEXT_FRAME] if k == len(frame) - 1 else [NEXT_FRAME]
        assert frames_in(out) == expected
        if k < len(frame) - 1:        # decode() takes a frame with or without its delimiters
            with pytest.raises(P.ProtocolError):
                P.decode(frame[:k])


# ---------------------------------------------------------------- F4 length field


@pytest.mark.parametrize("frame", FRAMES, ids=[g[0] + f"-{g[2]:04x}" for g in GOLDEN])
def test_bad_length_field_is_rejected_even_with_a_valid_crc(frame):
    body = P.cobs_decode(frame[1:-1])
    version, msg_type, tag, length = P.HEADER.unpack_from(body)
    payload = body[6:-4]
    for bad in {length + 1, length - 1, 0, P.MAX_PAYLOAD, 0xFFFF} - {length, -1}:
        forged = with_crc(P.HEADER.pack(version, msg_type, tag, bad) + payload)
        with pytest.raises(P.BadLength, match=f"header says {bad} payload bytes, frame carries {length}"):
            P.decode(forged)
        dec = P.FrameDecoder()
        assert frames_in(dec.feed(forged + NEXT)) == [NEXT_FRAME]
        assert dec.stats.bad_length == 1


def test_wrong_payload_length_for_the_type_names_type_and_counts():
    # faults.md D3 at the codec: a STATE with one joint's data missing (header and CRC consistent).
    state = P.State(5, 0, 0, 0, (0.1, 0.2, 0.3), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0),
                    (0.0, 0.0, 9.75))
    payload = state.pack()[:-8]
    forged = with_crc(P.HEADER.pack(1, P.MsgType.STATE, 3, len(payload)) + payload)
    with pytest.raises(P.BadLength, match=r"STATE payload is 73 bytes, expected 81 for 3 joints") as exc:
        P.decode(forged)
    assert (exc.value.msg_type, exc.value.got, exc.value.expected) == (P.MsgType.STATE, 73, 81)


@pytest.mark.parametrize("msg_type,payload,error,match", [
    (P.MsgType.TORQUE, b"\x02", P.BadValue, "TORQUE.enable must be 0 or 1, got 2"),
    (P.MsgType.HELLO, b"\x00", P.BadLength, "HELLO payload is 1 bytes, expected 0"),
    (P.MsgType.COMMAND, b"\x00\x21" + bytes(132), P.BadValue, "joint count 33 exceeds"),
    (P.MsgType.COMMAND, b"\x04\x00", P.BadValue, "flags 0x04 has unknown bits"),
    (P.MsgType.INFO, struct.pack("<BBBBBHH", 1, 0, 0, 0, 1, 0, 0) + b"\x01A\x02\xff\xfe", P.BadValue,
     r"joint_names\[0\] at byte 11 is not UTF-8"),
    (P.MsgType.INFO, struct.pack("<BBBBBHH", 1, 0, 0, 0, 2, 0, 0) + b"\x01A\x01x\x05ab", P.BadLength,
     r"joint_names\[1\] at byte 13 needs 5 bytes, only 2 left"),
    (P.MsgType.SIM_GROUND_TRUTH, bytes(60) + b"\x07", P.BadValue, "fallen must be 0 or 1"),
    (P.MsgType.SIM_RESET, struct.pack("<IBB", 0, 0, 2) + bytes(8), P.BadValue, "n=2 joints but no joint-pose"),
])
def test_malformed_payloads_are_typed_errors(msg_type, payload, error, match):
    with pytest.raises(error, match=match) as exc:
        P.decode(with_crc(P.HEADER.pack(1, msg_type, 0x1234, len(payload)) + payload))
    # The header passed its CRC, so the error says which request it was (a robot answers ERROR to it).
    assert (exc.value.tag, exc.value.msg_type) == (0x1234, msg_type)


# ---------------------------------------------------------------- F5 garbage


garbage = st.one_of(
    st.binary(min_size=1, max_size=64),
    st.lists(st.sampled_from([0, 1, 0xFF, 0x82]), min_size=1, max_size=64).map(bytes),   # delimiter runs
    st.tuples(st.sampled_from(FRAMES), st.integers(0, 200), st.integers(1, 40)).map(
        lambda t: t[0][t[1] % len(t[0]):][:min(t[2], len(t[0]) - 3)]),                 # fake headers / pieces
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAMES), min_size=1, max_size=10), st.lists(garbage, max_size=10))
def test_garbage_between_frames_loses_nothing(frames, bursts):
    stream = b""
    for i, frame in enumerate(frames):
        stream += (bursts[i] if i < len(bursts) else b"") + frame
    got = frames_in(P.FrameDecoder().feed(stream))
    # The very first burst may open with no delimiter: the decoder throws it away while unsynced.
    assert got == [P.decode(f) for f in frames]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAMES), min_size=1, max_size=10),
       st.lists(st.tuples(st.integers(0, 10**6), garbage), max_size=5))
def test_garbage_anywhere_loses_at_most_one_frame_per_burst(frames, bursts):
    stream = b"".join(frames)
    for pos, junk in bursts:
        pos %= len(stream) + 1
        stream = stream[:pos] + junk + stream[pos:]
    got = frames_in(P.FrameDecoder().feed(stream))
    sent = [P.decode(f) for f in frames]
    # Garbage made of pieces of real frames can, with the bytes around it, spell out a whole valid
    # frame (Hypothesis found one: a HOLD rebuilt across a burst's edge). That frame is on the
    # wire, byte for byte: accepting it is right. Anything else decoded must be a sent frame.
    on_wire = [g for g in got if g not in sent and P.encode(g.msg, g.tag).strip(b"\x00") in stream]
    got = [g for g in got if g not in on_wire]
    # Every other decoded frame is one that was sent, in order (no false accepts), and few are lost.
    it = iter(sent)
    assert all(any(g == s for s in it) for g in got)
    assert len(got) >= len(sent) - len(bursts) - len(on_wire)


# ---------------------------------------------------------------- F7 oversize, F8 foreign


def test_oversized_payload_is_refused_on_send():
    long_names = tuple(f"joint_with_a_long_name_{i:03d}" for i in range(20))
    with pytest.raises(P.FrameTooLong, match="INFO payload is .* MAX_PAYLOAD is 512"):
        P.encode(P.Info("robot", long_names), 1)


def test_oversized_input_is_dropped_without_buffering_it():
    dec = P.FrameDecoder()
    out = dec.feed(b"\x00")
    rng = random.Random(0)
    for _ in range(100):
        out += dec.feed(bytes(rng.randrange(1, 256) for _ in range(100)))
        assert dec.buffered <= P.MAX_ENCODED
    out += dec.feed(NEXT)
    assert [type(x) for x in out] == [P.FrameTooLong, P.Frame] and out[1] == NEXT_FRAME
    assert dec.stats.too_long == 1 and dec.stats.bytes_discarded == 10_000


def test_a_well_formed_but_too_long_frame_is_refused():
    payload = bytes(range(1, 256)) * 3          # 765 bytes, valid CRC, but above MAX_PAYLOAD
    frame = with_crc(P.HEADER.pack(1, P.MsgType.STATE, 1, len(payload)) + payload)
    dec = P.FrameDecoder()
    assert [type(x) for x in dec.feed(frame + NEXT)] == [P.FrameTooLong, P.Frame]
    with pytest.raises(P.FrameTooLong):
        P.decode(frame)


@pytest.mark.parametrize("extra", [1, 2])
def test_a_payload_just_over_512_bytes_is_refused_even_when_its_encoding_fits(extra):
    # 513-514 payload bytes with zeros every 200: COBS adds one byte per run, so the encoding
    # stays within MAX_ENCODED (525); the body (523-524 bytes) is still over MAX_BODY (522).
    payload = bytes((0 if i % 200 == 0 else 7) for i in range(P.MAX_PAYLOAD + extra))
    frame = with_crc(P.HEADER.pack(1, P.MsgType.STATE, 1, len(payload)) + payload)
    assert len(frame) - 2 <= P.MAX_ENCODED
    with pytest.raises(P.FrameTooLong, match="MAX_BODY"):
        P.decode(frame)
    assert [type(x) for x in P.FrameDecoder().feed(frame + NEXT)] == [P.FrameTooLong, P.Frame]


def test_unknown_type_and_other_version_are_typed():
    unknown = with_crc(P.HEADER.pack(1, 0x33, 9, 0))
    with pytest.raises(P.UnknownMessage) as exc:
        P.decode(unknown)
    assert (exc.value.msg_type, exc.value.tag) == (0x33, 9)
    v2 = P.encode(P.Hello(), 4, version=2)
    with pytest.raises(P.VersionMismatch) as exc:
        P.decode(v2)
    assert (exc.value.version, exc.value.msg_type, exc.value.tag) == (2, P.MsgType.HELLO, 4)
    dec = P.FrameDecoder()
    out = dec.feed(unknown + v2 + NEXT)
    assert [type(x) for x in out] == [P.UnknownMessage, P.VersionMismatch, P.Frame]
    assert (dec.stats.unknown_type, dec.stats.version_mismatch, dec.stats.frames) == (1, 1, 1)


def test_decoder_counts_what_it_discards():
    dec = P.FrameDecoder()
    bad = bytearray(NEXT)
    bad[5] ^= 0x10
    dec.feed(b"junk" + NEXT + b"\x00\x00" + bytes(bad) + b"\x00\x01\x02\x00")
    s = dec.stats
    assert s.frames == 1 and s.crc_errors + s.framing_errors == 2
    # 4 unsynced bytes + the damaged frame's bytes + 2 bytes of a runt frame
    assert s.bytes_discarded == 4 + len(NEXT) - 2 + 2


@pytest.mark.parametrize("msg,match", [
    (P.Command((0.1, 0.2), (1.0, 1.0)), "both kp_scale and kd_scale"),
    (P.Command((0.1, 0.2), (1.0,), (1.0,)), "kp_scale has 1 values, q has 2"),
    (P.State(0, 0, 0, 0, (0.1,), (0.1,), (1.0, 0.0, 0.0), (0.0,) * 3, (0.0,) * 3), "quat needs 4 values, got 3"),
    (P.State(-1, 0, 0, 0, (), (), (1.0, 0.0, 0.0, 0.0), (0.0,) * 3, (0.0,) * 3), "STATE field out of range"),
    (P.Info("r", ("a", "a" * 33)), r"joint_names\[1\] 'a{33}': must be <= 32 UTF-8 bytes"),
    (P.SimReset(1, None, (0.0, 0.0, 0.0), None), "both base_pos and base_quat"),
    (P.Command((0.0,) * 33), "joint count 33 exceeds MAX_JOINTS=32"),
])
def test_encode_refuses_malformed_messages(msg, match):
    with pytest.raises(P.BadValue, match=match):
        P.encode(msg, 1)


def test_tag_must_be_u16():
    with pytest.raises(P.BadValue, match="tag 65536"):
        P.encode(P.Hello(), 0x10000)
