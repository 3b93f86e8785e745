"""Golden byte vectors: the frames docs/protocol.md shows are the frames the codec writes and reads."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from simreal import protocol as P

S, F, C = P.Status, P.Fault, P.Capability
DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"

# (name, message, tag, frame as hex). The hex strings are written out, not computed: they pin the format.
GOLDEN = [
    ("HELLO", P.Hello(), 0x0001,
     "00 04 01 01 01 01 01 05 d3 3c 42 ff 00"),
    ("INFO", P.Info("quad", ("hip", "knee"), (1, 2, 3), 1, 500, C.SIMULATED | C.GAINS), 0x0001,
     "00 04 01 81 01 02 17 09 01 01 02 03 02 f4 01 03 13 04 71 75 61 64 03 68 69 70 04 6b 6e 65 "
     "65 d9 39 d6 e0 00"),
    ("GET_STATE", P.GetState(), 0x0002,
     "00 04 01 02 02 01 01 05 ed e9 57 aa 00"),
    ("STATE", P.State(1_000_000, S.TORQUE_ON | S.CALIBRATED, 0, 0, (0.5, -1.0), (0.25, 0.0),
                      (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.5), (0.0, 0.0, 9.75)), 0x0002,
     "00 04 01 82 02 02 49 04 40 42 0f 01 01 01 01 02 41 01 01 01 01 01 01 02 02 01 01 02 3f 01 "
     "03 80 bf 01 03 80 3e 01 01 01 01 01 03 80 3f 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 "
     "01 01 01 01 01 01 01 02 3f 01 01 01 01 01 01 01 01 01 07 1c 41 59 0d 06 fb 00"),
    ("COMMAND", P.Command((0.5, -1.0)), 0x0103,
     "00 06 01 03 03 01 0a 01 02 02 01 01 02 3f 01 07 80 bf 05 95 b4 75 00"),
    ("COMMAND", P.Command((0.5, -1.0), (1.0, 0.5), (1.0, 2.0)), 0x0104,
     "00 06 01 03 04 01 1a 03 01 02 01 01 02 3f 01 03 80 bf 01 03 80 3f 01 01 02 3f 01 03 80 3f "
     "01 01 06 40 7d d0 dd 69 00"),
    ("TORQUE", P.Torque(True), 0x0105,
     "00 06 01 04 05 01 01 06 01 68 24 13 a6 00"),
    ("HOLD", P.Hold(), 0x0106,
     "00 05 01 05 06 01 01 05 9d c8 d7 96 00"),
    ("DAMP", P.Damp(), 0x0107,
     "00 05 01 06 07 01 01 05 28 d5 cb 69 00"),
    ("HEARTBEAT", P.Heartbeat(), 0x0108,
     "00 05 01 07 08 01 01 05 ce ec c8 0c 00"),
    ("HEARTBEAT_ACK", P.HeartbeatAck(2_000_000, S.TORQUE_ON | S.CALIBRATED, 0), 0x0108,
     "00 06 01 87 08 01 0c 04 80 84 1e 01 01 01 01 02 41 01 01 05 7b bc 7a 4f 00"),
    ("CLEAR_ERRORS", P.ClearErrors(), 0x0109,
     "00 05 01 08 09 01 01 05 7a 1c 24 36 00"),
    ("ERROR", P.Error(P.ErrorCode.REFUSED, P.MsgType.CLEAR_ERRORS, "overheat"), 0x0109,
     "00 06 01 bf 09 01 0c 02 06 0f 08 08 6f 76 65 72 68 65 61 74 a5 6a aa 02 00"),
    ("STATE", P.State(1_020_000, S.DAMPING | S.CALIBRATED, F.OVERHEAT, 0b10, (0.5, -1.0), (0.0, 0.0),
                      (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 9.75)), 0x010A,
     "00 06 01 82 0a 01 49 04 60 90 0f 01 01 01 01 02 44 02 01 02 02 01 01 02 02 01 01 02 3f 01 "
     "03 80 bf 01 01 01 01 01 01 01 01 01 03 80 3f 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 "
     "01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 07 1c 41 b5 13 02 15 00"),
    ("SIM_RESET", P.SimReset(), 0x0200,
     "00 03 01 40 03 02 06 01 01 01 01 01 01 05 ee b2 a1 de 00"),
    ("SIM_RESET", P.SimReset(42, (0.5, -1.0), (0.0, 0.0, 0.25), (1.0, 0.0, 0.0, 0.0)), 0x0201,
     "00 06 01 40 01 02 2a 02 2a 01 01 03 03 02 01 01 02 3f 01 03 80 bf 01 01 01 01 01 01 01 01 "
     "01 03 80 3e 01 03 80 3f 01 01 01 01 01 01 01 01 01 01 01 05 39 82 27 ea 00"),
    ("SIM_GET_GROUND_TRUTH", P.SimGetGroundTruth(), 0x0202,
     "00 05 01 41 02 02 01 05 1a 1f 80 b6 00"),
    ("SIM_GROUND_TRUTH", P.SimGroundTruth(12.5, (1.0, 0.0, 0.25), (1.0, 0.0, 0.0, 0.0), (0.5, 0.0, 0.0),
                                          (0.0, 0.0, 0.125), False), 0x0202,
     "00 06 01 c1 02 02 3d 01 01 01 01 01 01 03 29 40 01 03 80 3f 01 01 01 01 01 03 80 3e 01 03 "
     "80 3f 01 01 01 01 01 01 01 01 01 01 01 01 01 01 02 3f 01 01 01 01 01 01 01 01 01 01 01 01 "
     "01 01 01 01 01 01 02 3e 05 15 c8 27 3c 00"),
]


IDS = [f"{name}-{tag:04x}" for name, _m, tag, _f in GOLDEN]


def _hex(data: bytes) -> str:
    return data.hex(" ")


@pytest.mark.parametrize("name,msg,tag,frame", GOLDEN, ids=IDS)
def test_encode_matches_golden(name, msg, tag, frame):
    assert msg.TYPE.name == name
    assert _hex(P.encode(msg, tag)) == frame


@pytest.mark.parametrize("name,msg,tag,frame", GOLDEN, ids=IDS)
def test_decode_golden(name, msg, tag, frame):
    assert P.decode(bytes.fromhex(frame)) == P.Frame(tag, msg)
    out = P.FrameDecoder().feed(bytes.fromhex(frame))
    assert out == [P.Frame(tag, msg)]


def test_every_message_type_has_a_golden_vector():
    assert {g[1].TYPE for g in GOLDEN} == set(P.MESSAGES)


def test_documented_vectors_are_the_golden_ones():
    doc = DOC.read_text()
    for name, msg, tag, frame in GOLDEN:
        body = P.cobs_decode(bytes.fromhex(frame)[1:-1])
        assert frame in doc, f"docs/protocol.md lacks the {name} frame {frame}"
        assert _hex(body) in doc, f"docs/protocol.md lacks the {name} body {_hex(body)}"


def test_crc_check_value():
    # CRC-32/ISO-HDLC, as named in docs/protocol.md.
    assert P.crc32(b"123456789") == 0xCBF43926


@pytest.mark.parametrize("raw,encoded", [
    ("00", "01 01"),
    ("00 00", "01 01 01"),
    ("00 11 00", "01 02 11 01"),
    ("11 22 00 33", "03 11 22 02 33"),
    ("11 22 33 44", "05 11 22 33 44"),
    ("11 00 00 00", "02 11 01 01 01"),
    ("", "01"),
])
def test_cobs_reference_vectors(raw, encoded):
    # The examples from Cheshire & Baker / Wikipedia's COBS article.
    assert _hex(P.cobs_encode(bytes.fromhex(raw))) == encoded
    assert P.cobs_decode(bytes.fromhex(encoded)) == bytes.fromhex(raw)


@pytest.mark.parametrize("raw,encoded_head,encoded_len", [
    (bytes(range(1, 255)), "ff 01 02", 255),                      # 254 non-zero bytes: no trailing code
    (bytes(range(0, 255)), "01 ff 01 02", 256),
    (bytes(range(1, 256)), "ff 01 02", 257),                      # 255 non-zero: a second block "02 ff"
    (bytes(range(2, 256)) + b"\x00", "ff 02 03", 257),            # run of 254 then a zero: "ff ... 01 01"
])
def test_cobs_long_runs(raw, encoded_head, encoded_len):
    enc = P.cobs_encode(raw)
    assert _hex(enc).startswith(encoded_head) and len(enc) == encoded_len
    assert b"\x00" not in enc
    assert P.cobs_decode(enc) == raw


def crc32_bitwise(data: bytes) -> int:
    """The CRC exactly as docs/protocol.md spells it out for firmware, one bit at a time."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.mark.parametrize("name,msg,tag,frame", GOLDEN, ids=IDS)
def test_golden_header_and_crc_follow_the_document(name, msg, tag, frame):
    body = P.cobs_decode(bytes.fromhex(frame)[1:-1])
    version, msg_type, got_tag, length = struct.unpack_from("<BBHH", body)
    assert (version, msg_type, got_tag, length) == (1, int(P.MsgType[name]), tag, len(body) - 10)
    assert crc32_bitwise(body[:-4]) == int.from_bytes(body[-4:], "little")


# Payloads rebuilt from the layouts as docs/protocol.md writes them (struct formats typed here by
# hand, independent of the codec's own tables).
DOC_PAYLOADS = {
    "INFO-0001": struct.pack("<BBBBBHH", 1, 1, 2, 3, 2, 500, 3) + b"\x04quad\x03hip\x04knee",
    "STATE-0002": struct.pack("<QHHIB2f2f4f3f3f", 1_000_000, 0x41, 0, 0, 2, 0.5, -1.0, 0.25, 0.0,
                              1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 9.75),
    "COMMAND-0103": struct.pack("<BB2f", 0, 2, 0.5, -1.0),
    "COMMAND-0104": struct.pack("<BB2f2f2f", 1, 2, 0.5, -1.0, 1.0, 0.5, 1.0, 2.0),
    "TORQUE-0105": b"\x01",
    "HEARTBEAT_ACK-0108": struct.pack("<QHH", 2_000_000, 0x41, 0),
    "ERROR-0109": struct.pack("<HBB", 6, 0x08, 8) + b"overheat",
    "STATE-010a": struct.pack("<QHHIB2f2f4f3f3f", 1_020_000, 0x44, 0x01, 0b10, 2, 0.5, -1.0, 0.0, 0.0,
                              1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.75),
    "SIM_RESET-0200": struct.pack("<IBB", 0, 0, 0),
    "SIM_RESET-0201": struct.pack("<IBB2f3f4f", 42, 3, 2, 0.5, -1.0, 0.0, 0.0, 0.25, 1.0, 0.0, 0.0, 0.0),
    "SIM_GROUND_TRUTH-0202": struct.pack("<d3f4f3f3fB", 12.5, 1.0, 0.0, 0.25, 1.0, 0.0, 0.0, 0.0,
                                         0.5, 0.0, 0.0, 0.0, 0.0, 0.125, 0),
}


@pytest.mark.parametrize("name,msg,tag,frame", GOLDEN, ids=IDS)
def test_golden_payload_follows_the_documented_layout(name, msg, tag, frame):
    key = f"{name}-{tag:04x}"
    payload = P.cobs_decode(bytes.fromhex(frame)[1:-1])[6:-4]
    assert payload == DOC_PAYLOADS.get(key, b"")   # requests without a listed payload are empty
