"""Bosch BNO055 9-axis IMU over its UART interface (PS1=0, PS0=1, 115200 baud), both directions.

    read request:   AA 01 reg len         ->  BB len data...   or  EE status
    write request:  AA 00 reg len data... ->  EE 01 (write success) or EE status

The protocol has no checksum and no tag, so the host treats every reading as untrusted: it checks
the reply length, the quaternion's norm and the ranges below, and fails the read otherwise
(simreal.deploy.imu). One read of DATA_START..DATA_END returns accelerometer (gravity included),
magnetometer, gyroscope, Euler angles and the fused quaternion in NDOF mode.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

START, READ_REPLY, STATUS_REPLY = 0xAA, 0xBB, 0xEE
WRITE, READ = 0x00, 0x01
WRITE_SUCCESS = 0x01

CHIP_ID_REG, CHIP_ID = 0x00, 0xA0
OPR_MODE_REG, MODE_CONFIG, MODE_NDOF = 0x3D, 0x00, 0x0C
ACC_DATA, GYR_DATA, QUA_DATA = 0x08, 0x14, 0x20
DATA_START, DATA_LEN = ACC_DATA, QUA_DATA + 8 - ACC_DATA      # 0x08..0x27: 32 bytes

ACC_LSB = 1 / 100.0                 # m/s^2 per LSB
GYR_LSB = math.radians(1 / 16.0)    # rad/s per LSB (1 dps = 16 LSB)
QUA_LSB = 1 / (1 << 14)
GYR_RANGE = math.radians(2000.0)    # rad/s, the sensor's full scale
ACC_RANGE = 16 * 9.80665            # m/s^2 (+-16 g range)


def read_request(reg: int, length: int) -> bytes:
    return bytes([START, READ, reg, length])


def write_request(reg: int, data: bytes) -> bytes:
    return bytes([START, WRITE, reg, len(data)]) + data


def read_reply(data: bytes) -> bytes:
    return bytes([READ_REPLY, len(data)]) + data


def status_reply(code: int) -> bytes:
    return bytes([STATUS_REPLY, code])


@dataclass(frozen=True)
class Sample:
    quat: tuple[float, float, float, float]   # wxyz
    gyro: tuple[float, float, float]          # rad/s, sensor frame
    accel: tuple[float, float, float]         # m/s^2, sensor frame, gravity included


def decode_data(data: bytes) -> Sample:
    """The DATA_START block -> SI units (no checks: see `problem`)."""
    v = struct.unpack("<3h3h3h3h4h", data[:DATA_LEN])
    acc, gyr, qua = v[0:3], v[6:9], v[12:16]
    return Sample(tuple(q * QUA_LSB for q in qua), tuple(g * GYR_LSB for g in gyr),
                  tuple(a * ACC_LSB for a in acc))


def encode_data(quat, gyro, accel) -> bytes:
    """SI values -> the DATA_START block, quantized and saturated as the sensor would."""
    def q(x: float, lsb: float) -> int:
        return max(-32768, min(32767, int(round(x / lsb)))) if math.isfinite(x) else 0

    acc = [q(a, ACC_LSB) for a in accel]
    gyr = [q(g, GYR_LSB) for g in gyro]
    qua = [q(c, QUA_LSB) for c in quat]
    return struct.pack("<3h3h3h3h4h", *acc, 0, 0, 0, *gyr, 0, 0, 0, *qua)


def problem(s: Sample) -> str:
    """Why a decoded sample cannot be a reading (empty when it can)."""
    norm = math.sqrt(sum(c * c for c in s.quat))
    if not 0.95 <= norm <= 1.05:
        return f"quaternion norm {norm:.3f} (not a rotation: fusion not running or a damaged reply)"
    if max(abs(g) for g in s.gyro) >= GYR_RANGE:
        return "gyro at full scale"
    if max(abs(a) for a in s.accel) >= ACC_RANGE:
        return "accelerometer at full scale"
    return ""
