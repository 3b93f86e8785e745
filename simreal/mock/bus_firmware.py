"""The mock robot's servos as a chain of bus servos (Feetech STS or Dynamixel X) and its IMU as a
BNO055 on a UART: packets in, status packets out, the same MockRobot physics underneath.

Each servo keeps its own control table (simreal.hardware.servo_models). Writes change registers;
what the registers mean is applied to the robot as a whole (the mock drives all joints as one):
  * torque_enable -> TORQUE on/off (the last value written, to any servo);
  * goal_position -> COMMAND with every servo's goal (in lockstep, a SYNC WRITE of goal positions
    is what advances one control period);
  * Feetech: the firmware runs a proportional-only loop (kd = 0 whatever register 22 says) with its
    internal target slewed at the model's max speed (the gap's target_slew), kp = robot.yaml kp x
    P register / the wiring's P; torque_limit (0-1000) scales stall torque and speed;
  * Dynamixel: kp and kd follow the P and D registers over the wiring's gains; the bus watchdog
    (register 98, units of 20 ms) holds the pose when instructions stop, and refuses goals until
    it is cleared, as the firmware does.
Present registers are the robot's measurement (its noise and calibration error included) through
the Assembly: how each servo is mounted (direction, raw ticks at 0 rad). A calibration must find
exactly that. Servos listed as missing never answer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from simreal import protocol as P
from simreal.hardware import bno055, dynamixel, feetech
from simreal.hardware.codecs import CODECS
from simreal.hardware.packets import Packet
from simreal.hardware.servo_models import ServoModel
from simreal.hardware.wiring import BusWiring

DEFAULT_GAINS = {"feetech": (32, 0), "dynamixel": (400, 0)}   # factory P, and D the mock scales kd by
NOMINAL_VOLTAGE = 12.0
AMBIENT_C, OVERHEAT_C = 35.0, 75.0


@dataclass(frozen=True)
class Assembly:
    """How the mock's servos are mounted: the truth `simreal calibrate` has to recover."""
    directions: Mapping[str, int]
    zero: Mapping[str, int]                    # raw ticks at 0 rad
    missing: frozenset[int] = frozenset()      # servo ids that never answer

    @classmethod
    def of(cls, spec, wiring: BusWiring, *, missing=(), reversed_joints=()) -> Assembly:
        """Directions as the wiring documents them (or reversed, for tests); zeros spread over
        +-150 ticks around the model's centre, fixed per servo id (no two robots are assembled alike,
        but the same mock always is)."""
        m = wiring.servo
        dirs = {j.name: wiring.directions.get(j.name, 1) * (-1 if j.name in reversed_joints else 1)
                for j in spec.joints}
        zero = {j.name: m.center + (j.servo_id * 737) % 301 - 150 for j in spec.joints}
        return cls(dirs, zero, frozenset(missing))

    def ticks(self, joint: str, rad: float, m: ServoModel) -> int:
        return int(round(self.zero[joint] + self.directions[joint] * rad * m.ticks_per_rev / (2 * math.pi)))

    def rad(self, joint: str, ticks: int, m: ServoModel) -> float:
        return self.directions[joint] * (ticks - self.zero[joint]) * 2 * math.pi / m.ticks_per_rev


@dataclass
class BusCounters:
    instructions: int = 0
    replies: int = 0
    unanswered: int = 0          # addressed to a missing servo or broadcast
    by_instruction: dict = field(default_factory=dict)


class ServoBusFirmware:
    """Serves decoded instruction packets; `serve` returns the status packets, in bus order."""

    def __init__(self, robot, wiring: BusWiring, assembly: Assembly):
        self.robot, self.wiring, self.assembly = robot, wiring, assembly
        self.model = m = wiring.servo
        self.codec = CODECS[m.family]
        self.family = m.family
        spec = robot.spec
        self.joints = [j.name for j in spec.joints]
        self.joint_of = {j.servo_id: i for i, j in enumerate(spec.joints)}
        p, d = (wiring.gains.p, wiring.gains.d) if wiring.gains else DEFAULT_GAINS[m.family]
        self.nominal_gains = (p, d)
        self.tables: dict[int, bytearray] = {}
        for j in spec.joints:
            t = bytearray(256)
            self.tables[j.servo_id] = t
            self._set(t, "model_number", m.model_number)
            self._set(t, "id", j.servo_id)
            self._set(t, "baud_rate", m.baud_code(wiring.baudrate))
            self._set(t, "return_delay", wiring.return_delay_us // 2)
            self._set(t, "max_temperature_limit", int(m.max_temperature))
            self._set(t, "p_gain", p)
            self._set(t, "d_gain", d)
            self._set(t, "min_position_limit", 0)
            self._set(t, "max_position_limit", m.ticks_per_rev - 1)
            if m.has("firmware_major"):
                self._set(t, "firmware_major", 3)
                self._set(t, "firmware_minor", 10)
                self._set(t, "torque_limit", 1000)
            else:
                self._set(t, "firmware", 52)
        self.counters = BusCounters()
        self.watchdog_deadline = math.inf
        self.watchdog_tripped = False
        self.last_instruction = 0.0
        self.lost: set[int] = set()               # servo ids gone since start (lose_servo)
        self._refresh(0.0)
        for sid, t in self.tables.items():
            self._set(t, "goal_position", self.model.reg("present_position").decode(t, self.model.reg("present_position").address))

    # ---- register helpers

    def _set(self, table: bytearray, name: str, value: int) -> None:
        if self.model.has(name):
            r = self.model.reg(name)
            table[r.address:r.address + r.size] = r.encode(value)

    def _get(self, table: bytearray, name: str) -> int:
        r = self.model.reg(name)
        return r.decode(table, r.address)

    def answers(self, sid: int) -> bool:
        return sid in self.tables and sid not in self.assembly.missing and sid not in self.lost

    # ---- serving

    def serve(self, pkt: Packet, now: float) -> list[bytes]:
        c = self.counters
        c.instructions += 1
        c.by_instruction[pkt.code] = c.by_instruction.get(pkt.code, 0) + 1
        self.last_instruction = now
        I = self.codec.Instr
        code, prm, sid = pkt.code, pkt.params, pkt.servo_id
        if code == I.SYNC_WRITE:
            self._sync_write(prm, now)
            return []
        if code == I.SYNC_READ:
            addr, length, ids = self._sync_read_args(prm)
            self._refresh(now)
            return [self._status(s, bytes(self.tables[s][addr:addr + length])) for s in ids if self.answers(s)]
        if sid == self.codec.BROADCAST_ID:
            if code in (I.WRITE,):
                for s in list(self.tables):
                    self._write(s, prm, now)
                self._apply(now, goals=self._goal_written(prm))
            elif code == I.PING and self.family == "dynamixel":   # broadcast ping: every servo answers
                return [self._ping_reply(s) for s in sorted(self.tables) if self.answers(s)]
            c.unanswered += 1
            return []
        if not self.answers(sid):
            c.unanswered += 1
            return []
        if code == I.PING:
            return [self._ping_reply(sid)]
        if code == I.READ:
            addr, length = self._addr_len(prm)
            self._refresh(now)
            return [self._status(sid, bytes(self.tables[sid][addr:addr + length]))]
        if code == I.WRITE:
            error = self._write(sid, prm, now)
            reply = self._status(sid, b"", error)          # answered as the id it was asked by
            self._apply(now, goals=self._goal_written(prm))
            return [reply]
        return [self._status(sid, b"", self._instruction_error())]

    def _instruction_error(self) -> int:
        return dynamixel.Error.INSTRUCTION if self.family == "dynamixel" else 0

    def _ping_reply(self, sid: int) -> bytes:
        if self.family == "dynamixel":
            t = self.tables[sid]
            return self._status(sid, bytes(t[0:2]) + bytes([t[6]]))
        return self._status(sid, b"")

    def _addr_len(self, prm: bytes) -> tuple[int, int]:
        if self.family == "dynamixel":
            return prm[0] | prm[1] << 8, prm[2] | prm[3] << 8
        return prm[0], prm[1]

    def _sync_read_args(self, prm: bytes) -> tuple[int, int, list[int]]:
        addr, length = self._addr_len(prm)
        return addr, length, list(prm[4 if self.family == "dynamixel" else 2:])

    def _status(self, sid: int, data: bytes, error: int = 0) -> bytes:
        self.counters.replies += 1
        t = self.tables.get(sid)
        if self.family == "dynamixel":
            if t is not None and self._get(t, "hardware_error"):
                error |= dynamixel.ALERT
            return dynamixel.status(sid, error, data)
        if t is not None:
            error |= self._get(t, "hardware_error")
        return feetech.status(sid, error, data)

    # ---- writes and what they mean

    def _goal_written(self, prm: bytes) -> bool:
        goal = self.model.reg("goal_position")
        addr, n = (prm[0] | prm[1] << 8, len(prm) - 2) if self.family == "dynamixel" else (prm[0], len(prm) - 1)
        return addr <= goal.address < addr + n

    def _write(self, sid: int, prm: bytes, now: float) -> int:
        """Write to one servo's table; the status error (0 = accepted)."""
        if self.family == "dynamixel":
            addr, data = prm[0] | prm[1] << 8, prm[2:]
        else:
            addr, data = prm[0], prm[1:]
        t = self.tables[sid]
        if addr + len(data) > len(t):
            return dynamixel.Error.DATA_LENGTH if self.family == "dynamixel" else 0
        eeprom = [r for n, r in self.model.registers.items()
                  if r.eeprom and addr <= r.address < addr + len(data)]
        if eeprom and self._get(t, "torque_enable") and self.family == "dynamixel":
            return dynamixel.Error.ACCESS          # EEPROM is locked while torque is on
        goal = self.model.reg("goal_position")
        if self.watchdog_tripped and addr <= goal.address < addr + len(data):
            return dynamixel.Error.DATA_RANGE      # goals are refused until the watchdog is cleared
        old_torque = self._get(t, "torque_enable")
        t[addr:addr + len(data)] = data
        if self.model.has("bus_watchdog"):
            wd = self.model.reg("bus_watchdog")
            if addr <= wd.address < addr + len(data):
                value = self._get(t, "bus_watchdog")
                if value == 0:
                    self.watchdog_tripped = False
        new_id = self._get(t, "id")
        if new_id != sid:                          # servos set-id: the servo answers to its new id
            if new_id in self.tables:
                self._set(t, "id", sid)
            else:
                self.tables[new_id] = self.tables.pop(sid)
                if sid in self.joint_of:
                    self.joint_of[new_id] = self.joint_of.pop(sid)
        if self._get(t, "torque_enable") != old_torque:
            self._torque(bool(self._get(t, "torque_enable")), now)
        return 0

    def _sync_write(self, prm: bytes, now: float) -> None:
        addr, length = self._addr_len(prm)
        off = 4 if self.family == "dynamixel" else 2
        a = prm[:2] if self.family == "dynamixel" else prm[:1]
        for k in range(off, len(prm) - length + 1, length + 1):
            sid = prm[k]
            if sid in self.tables and self.answers(sid):
                self._write(sid, a + prm[k + 1:k + 1 + length], now)
        self._apply(now, goals=self._goal_written(a + bytes(length)))

    def _torque(self, on: bool, now: float) -> None:
        for t in self.tables.values():            # the mock's servos switch as one
            self._set(t, "torque_enable", int(on))
        self.robot.handle(P.Frame(1, P.Torque(on)), now)
        if on:
            for sid, t in self.tables.items():    # torque on starts from where the joint is
                self._set(t, "goal_position", self._get(t, "present_position"))
            self._apply(now, goals=False)

    def _drive_scales(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(self.joints)
        kp, kd, ts = np.ones(n), np.zeros(n), np.ones(n)
        p0, d0 = self.nominal_gains
        for sid, i in self.joint_of.items():
            t = self.tables[sid]
            kp[i] = self._get(t, "p_gain") / p0 if p0 else 0.0
            if self.family == "dynamixel":
                kd[i] = self._get(t, "d_gain") / d0 if d0 else 0.0
            if self.model.has("torque_limit"):
                ts[i] = self._get(t, "torque_limit") / 1000.0
        return np.clip(kp, 0, P.MAX_GAIN_SCALE), np.clip(kd, 0, P.MAX_GAIN_SCALE), np.clip(ts, 0, 1)

    def _apply(self, now: float, *, goals: bool) -> None:
        kp, kd, ts = self._drive_scales()
        self.robot.set_drive(kp, kd, ts)
        if not goals or self.robot.mode != "position":
            return
        q = np.zeros(len(self.joints))
        for sid, i in self.joint_of.items():
            q[i] = self.assembly.rad(self.joints[i], self._get(self.tables[sid], "goal_position"), self.model)
        self.robot.handle(P.Frame(1, P.Command(tuple(q), tuple(kp), tuple(kd))), now)

    # ---- present values

    def _refresh(self, now: float) -> None:
        """Present registers := the robot's measurement at `now`."""
        r, m = self.robot, self.model
        s = r.state(now)
        force = r.sim.data.actuator_force[r.sim.act_idx]
        stall = r.sim.servo.torque_limit
        temps = np.full(len(self.joints), AMBIENT_C)
        err_bits = np.zeros(len(self.joints), dtype=int)
        for bit, name in m.error_bits.items():
            flag = P.Fault[name]
            if r.errors & flag:
                for i in range(len(self.joints)):
                    if r.fault_joints >> i & 1 or not r.fault_joints:
                        err_bits[i] |= 1 << bit
                        if flag == P.Fault.OVERHEAT:
                            temps[i] = OVERHEAT_C
        for sid, i in self.joint_of.items():
            t, name = self.tables[sid], self.joints[i]
            q = s.q[i] if math.isfinite(s.q[i]) else 0.0
            dq = s.dq[i] if math.isfinite(s.dq[i]) else 0.0
            self._set(t, "present_position", max(-32767, min(32767, self.assembly.ticks(name, q, m))))
            vel = int(round(self.assembly.directions[name] * dq / m.velocity_lsb))
            self._set(t, "present_velocity", max(-32767, min(32767, vel)))
            load = int(round(self.assembly.directions[name] * force[i] / stall[i] / m.load_lsb))
            self._set(t, "present_load" if m.has("present_load") else "present_current",
                      max(-1023 if m.has("present_load") else -32767, min(1023 if m.has("present_load") else 32767, load)))
            self._set(t, "present_voltage", int(round(NOMINAL_VOLTAGE / m.voltage_lsb)))
            self._set(t, "present_temperature", int(temps[i]))
            self._set(t, "hardware_error", int(err_bits[i]))
        self.imu = bno055.encode_data(s.quat, s.gyro, s.accel)

    # ---- the Dynamixel bus watchdog

    def next_time(self) -> float:
        if not self.model.has("bus_watchdog") or self.watchdog_tripped or self.robot.mode == "off":
            return math.inf
        units = max(self._get(t, "bus_watchdog") for t in self.tables.values())
        return self.last_instruction + units * 0.02 if units > 0 else math.inf

    def tick(self, now: float) -> None:
        if self.next_time() <= now:
            self.watchdog_tripped = True
            for t in self.tables.values():
                self._set(t, "bus_watchdog", -1)
            self.robot.handle(P.Frame(1, P.Hold()), now)
            self.robot.watchdog_log.append((now, "bus watchdog: hold"))
            self.robot.watchdog_trips += 1


class Bno055Firmware:
    """The robot's IMU (its noisy, biased measurement) as a BNO055 in NDOF mode on a UART."""

    def __init__(self, robot, bus: ServoBusFirmware):
        self.robot, self.bus = robot, bus
        self.registers = bytearray(128)
        self.registers[bno055.CHIP_ID_REG] = bno055.CHIP_ID
        self.registers[bno055.OPR_MODE_REG] = bno055.MODE_NDOF
        self.buf = bytearray()
        self.reads = 0

    def feed(self, data: bytes, now: float) -> list[bytes]:
        self.buf += data
        out = []
        while True:
            i = self.buf.find(bytes([bno055.START]))
            if i < 0:
                self.buf.clear()
                return out
            del self.buf[:i]
            if len(self.buf) < 4:
                return out
            op, reg, n = self.buf[1], self.buf[2], self.buf[3]
            if op == bno055.READ:
                del self.buf[:4]
                out.append(self._read(reg, n, now))
            elif op == bno055.WRITE:
                if len(self.buf) < 4 + n:
                    return out
                self.registers[reg:reg + n] = self.buf[4:4 + n]
                del self.buf[:4 + n]
                out.append(bno055.status_reply(bno055.WRITE_SUCCESS))
            else:
                del self.buf[:1]

    def _read(self, reg: int, n: int, now: float) -> bytes:
        if not 0 < n <= 128 or reg + n > len(self.registers):
            return bno055.status_reply(0x06)        # REGMAP_INVALID_ADDRESS
        self.reads += 1
        if reg <= bno055.QUA_DATA + 7 and reg + n > bno055.DATA_START:
            self.bus._refresh(now)
            self.registers[bno055.DATA_START:bno055.DATA_START + bno055.DATA_LEN] = self.bus.imu
        return bno055.read_reply(bytes(self.registers[reg:reg + n]))
