"""Servo-bus codecs: the manufacturers' documented packets, a second witness (the vendors' own
SDKs build the same bytes), decoder resync, and register sign conventions."""
from __future__ import annotations

import random

import pytest

from simreal.hardware import bno055, dynamixel as D, feetech as F
from simreal.hardware.servo_models import STS3215, XL330_M288

h = bytes.fromhex

# ROBOTIS e-Manual, "DYNAMIXEL Protocol 2.0", instruction examples (ID 1, XM430)
DXL_GOLDEN = [
    (D.ping(1), "FF FF FD 00 01 03 00 01 19 4E"),
    (D.status(1, 0, h("06 04 26")), "FF FF FD 00 01 07 00 55 00 06 04 26 65 5D"),
    (D.read(1, 132, 4), "FF FF FD 00 01 07 00 02 84 00 04 00 1D 15"),
    (D.status(1, 0, h("A6 00 00 00")), "FF FF FD 00 01 08 00 55 00 A6 00 00 00 8C C0"),
    (D.write(1, 116, (512).to_bytes(4, "little")), "FF FF FD 00 01 09 00 03 74 00 00 02 00 00 CA 89"),
    (D.status(1, 0), "FF FF FD 00 01 04 00 55 00 A1 0C"),
    (D.sync_read(132, 4, [1, 2]), "FF FF FD 00 FE 09 00 82 84 00 04 00 01 02 CE FA"),
    (D.sync_write(116, 4, {1: (150).to_bytes(4, "little"), 2: (170).to_bytes(4, "little")}),
     "FF FF FD 00 FE 11 00 83 74 00 04 00 01 96 00 00 00 02 AA 00 00 00 82 87"),
]
# Feetech SCS/STS communication protocol manual examples (ID 1)
FT_GOLDEN = [
    (F.ping(1), "FF FF 01 02 01 FB"),
    (F.status(1, 0), "FF FF 01 02 00 FC"),
    (F.read(1, 0x38, 2), "FF FF 01 04 02 38 02 BE"),
    (F.status(1, 0, h("18 05")), "FF FF 01 04 00 18 05 DD"),
    (F.write(1, 0x2A, h("00 08 00 00 E8 03")), "FF FF 01 09 03 2A 00 08 00 00 E8 03 D5"),
    (F.sync_write(0x2A, 6, {i: h("00 08 00 00 E8 03") for i in (1, 2, 3, 4)}),
     "FF FF FE 20 83 2A 06 01 00 08 00 00 E8 03 02 00 08 00 00 E8 03 03 00 08 00 00 E8 03 "
     "04 00 08 00 00 E8 03 58"),
]


@pytest.mark.parametrize("built,doc", DXL_GOLDEN + FT_GOLDEN)
def test_packets_match_the_manufacturers_examples(built, doc):
    assert built == h(doc)


class _CapturePort:
    """Enough of the vendors' PortHandler to capture what their packet handlers write."""
    is_using = False

    def __init__(self):
        self.written = b""

    def clearPort(self):
        pass

    def writePort(self, packet):
        self.written = bytes(packet)
        return len(packet)

    def setPacketTimeout(self, n):
        pass


def test_dynamixel_sdk_builds_the_same_bytes():
    sdk = pytest.importorskip("dynamixel_sdk")
    ph = sdk.Protocol2PacketHandler()
    rng = random.Random(3)
    for _ in range(200):
        sid, addr = rng.randrange(0, 253), rng.randrange(0, 600)
        data = bytes(rng.choice([0xFF, 0xFD, 0x00, rng.randrange(256)]) for _ in range(rng.randrange(1, 12)))
        port = _CapturePort()
        ph.writeTxOnly(port, sid, addr, len(data), list(data))
        if b"\xff\xff\xfd" in bytes([addr & 0xFF, addr >> 8]) + data:
            # dynamixel_sdk 4.1.0 drops its own stuffing (txPacket ignores addStuffing's new list)
            # and sends the packet unstuffed; the stuffing is checked against the e-Manual's rule below
            assert D.write(sid, addr, data) != port.written
            continue
        assert D.write(sid, addr, data) == port.written
        port = _CapturePort()
        ids = rng.sample(range(1, 30), 4)
        ph.syncReadTx(port, addr, 4, ids, len(ids), False)
        assert D.sync_read(addr, 4, ids) == port.written
        chunks = {i: bytes(rng.randrange(256) for _ in range(4)) for i in ids}
        port = _CapturePort()
        ph.syncWriteTxOnly(port, addr, 4, [b for i in ids for b in (i, *chunks[i])], 5 * len(ids))
        assert D.sync_write(addr, 4, chunks) == port.written


def test_feetech_sdk_builds_the_same_bytes():
    sdk = pytest.importorskip("scservo_sdk")
    ph = sdk.PacketHandler(0)
    rng = random.Random(4)
    for _ in range(200):
        sid, addr = rng.randrange(0, 253), rng.randrange(0, 100)
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        port = _CapturePort()
        ph.writeTxOnly(port, sid, addr, len(data), list(data))
        assert F.write(sid, addr, data) == port.written
        ids = rng.sample(range(1, 30), 3)
        port = _CapturePort()
        ph.syncReadTx(port, addr, 2, ids, len(ids))
        assert F.sync_read(addr, 2, ids) == port.written
        chunks = {i: bytes(rng.randrange(256) for _ in range(2)) for i in ids}
        port = _CapturePort()
        ph.syncWriteTxOnly(port, addr, 2, [b for i in ids for b in (i, *chunks[i])], 3 * len(ids))
        assert F.sync_write(addr, 2, chunks) == port.written


def test_dynamixel_crc_check_value():
    assert D.crc16(b"123456789") == 0xFEE8       # CRC-16/UMTS (BUYPASS) check value


@pytest.mark.parametrize("codec", [D, F])
def test_decoder_recovers_packets_after_garbage_and_drops_damage(codec):
    rng = random.Random(7)
    good = [codec.status(i, 0, bytes(rng.randrange(256) for _ in range(6))) for i in range(1, 9)]
    stream, expected = bytearray(), []
    for k, pkt in enumerate(good):
        stream += bytes(rng.choice([0xFF, 0xFD, 0x00, 0x55, rng.randrange(256)]) for _ in range(rng.randrange(0, 9)))
        if k % 3 == 2:                                   # every third packet damaged: never delivered
            bad = bytearray(pkt)
            bad[-3] ^= 0x10
            stream += bad
        else:
            stream += pkt
            expected.append(pkt)
    dec = codec.Decoder(status=True)
    got = []
    for i in range(0, len(stream), 5):                   # any chunking
        got += dec.feed(bytes(stream[i:i + 5]))
    want = [codec.Decoder(status=True).feed(p)[0] for p in expected]
    assert got == want
    assert dec.stats.checksum_errors >= 1


def test_dynamixel_stuffing_round_trips_header_bytes_in_data():
    data = h("FF FF FD 01 FF FF FD FD FF FF")
    pkt = D.write(3, 200, data)
    assert h("FF FF FD FD") in pkt[7:]
    (p,) = D.Decoder(status=False).feed(pkt)
    assert (p.servo_id, p.code, p.params) == (3, D.Instr.WRITE, (200).to_bytes(2, "little") + data)


def test_every_single_bit_flip_is_rejected():
    for codec in (D, F):
        pkt = codec.status(5, 0, h("10 20 30 40"))
        for bit in range(8 * len(pkt)):
            bad = bytearray(pkt)
            bad[bit // 8] ^= 1 << (bit % 8)
            assert [p for p in codec.Decoder(status=True).feed(bytes(bad)) if p.params == h("10 20 30 40")
                    and p.servo_id == 5] == [], (codec.FAMILY, bit)


def test_register_sign_conventions():
    speed, load = STS3215.reg("present_velocity"), STS3215.reg("present_load")
    assert speed.encode(-100) == (100 | 1 << 15).to_bytes(2, "little")       # sign-magnitude, bit 15
    assert load.decode((300 | 1 << 10).to_bytes(2, "little")) == -300        # bit 10 on load
    vel = XL330_M288.reg("present_velocity")
    assert vel.encode(-1) == h("FF FF FF FF") and vel.decode(h("FE FF FF FF")) == -2   # two's complement
    with pytest.raises(ValueError):
        STS3215.reg("goal_position").encode(1 << 15)
    assert STS3215.state_block == (56, 10)


def test_bno055_block_round_trip_and_checks():
    data = bno055.encode_data((1.0, 0.0, 0.0, 0.0), (0.1, -0.2, 0.3), (0.0, 0.0, 9.81))
    s = bno055.decode_data(data)
    assert s.quat == (1.0, 0.0, 0.0, 0.0) and abs(s.gyro[1] + 0.2) < 0.002 and abs(s.accel[2] - 9.81) < 0.01
    assert bno055.problem(s) == ""
    assert "norm" in bno055.problem(bno055.decode_data(bytes(len(data))))     # all zeros: no fusion
