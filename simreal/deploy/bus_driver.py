"""`Driver` over a chain of bus servos (Feetech STS or Dynamixel X) and a BNO055 IMU: what a robot
with no microcontroller of its own runs, with the same runtime, safety layer and logs.

Per cycle: one SYNC WRITE of goal positions (Dynamixel: gain registers when the runtime changes its
gain scales), one SYNC READ of the state block, one IMU read. Every reply is checked before it can
reach the policy (`plausibility`): raw ticks inside the encoder's range, a position change no
faster than the servo can move since the last good read, speed, load, voltage and temperature in
range. A failed or implausible group read fails whole (ServoLink): nothing is filled in.

Torque needs a calibration that matches the servos found (ids and model: faults.md D4). Limits the
firmware does not enforce trip a DeviceFault: temperature, sustained load, supply voltage.
Watchdogs: Dynamixel's Bus Watchdog register is armed at torque on (the servos hold their pose
when instructions stop, even if this process is killed); Feetech STS has none, so a host thread
turns torque off when the control loop stops sending. It cannot cover a killed or frozen host
process: then STS servos keep their last goal with torque on (docs/servo_buses.md).
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Sequence

import numpy as np

from simreal import protocol as P
from simreal.deploy.driver import (DeviceFault, DriverError, HandshakeError, JointMap, LinkConfig,
                                   LinkTimeout, NotSupported, RemoteError, Values, fault_text)
from simreal.deploy.servo_link import BusLinkCounters, ServoLink
from simreal.deploy.transport import open_port
from simreal.deploy.imu import Bno055Link, ImuSource
from simreal.hardware import dynamixel
from simreal.hardware.codecs import CODECS
from simreal.hardware.packets import Packet
from simreal.hardware.wiring import BusWiring, Calibration

DAMP_TORQUE = 200            # Feetech torque_limit (per mille) while damping: a soft hold
DAMP_GAIN = 0.1              # Dynamixel P gain fraction while damping
POSITION_MARGIN = 0.05       # rad: encoder noise and quantization allowed on top of max speed x dt
SPEED_FACTOR = 1.5           # a joint may be pushed past the servo's own speed, not beyond this
FIRMWARE = (0, 1, 0)


class NotCalibrated(RemoteError):
    def __init__(self, detail: str):
        super().__init__(P.Error(P.ErrorCode.REFUSED, P.MsgType.TORQUE, detail[:P.MAX_DETAIL]))


class BusDriver:
    """Driver interface (simreal.deploy.driver.Driver) over a servo bus + IMU."""

    def __init__(self, url: str, spec, wiring: BusWiring, calibration: Calibration | None, *,
                 imu_url: str = "", imu: ImuSource | None = None, joint_names: Sequence[str] | None = None,
                 opener=open_port, clock=time.monotonic, config: LinkConfig | None = None):
        self.url, self.imu_url, self.spec, self.wiring, self.calibration = url, imu_url, spec, wiring, calibration
        self.model = wiring.servo
        self.codec = CODECS[wiring.family]
        self.clock = clock
        self.config = config or LinkConfig(baudrate=wiring.baudrate, timeout_s=wiring.timeout,
                                           retries=wiring.retries)
        self.link = ServoLink(url, self.codec, baudrate=wiring.baudrate, timeout_s=self.config.timeout_s,
                              retries=self.config.retries, reply_gap_s=wiring.return_delay_us * 1e-6,
                              opener=opener, clock=clock)
        self.counters: BusLinkCounters = self.link.counters
        self.imu: ImuSource = imu or Bno055Link(imu_url, wiring.imu.baudrate, timeout_s=wiring.imu.timeout,
                                                opener=opener, clock=clock)
        self.info: P.Info | None = None
        self.names = [j.name for j in spec.joints]
        self.ids = [j.servo_id for j in spec.joints]
        self._map = JointMap.build(joint_names, self.names)
        self._lock = threading.RLock()
        self.mode = "off"                 # off | position | damp | hold
        self._last_q: np.ndarray | None = None
        self._last_t = 0.0
        self._goals_since_read = 0        # a lockstep mock's time moves one period per goal write
        self.period_s = spec.control.period
        self._over_load = np.zeros(len(self.ids), dtype=int)
        self._gain_scales: tuple | None = None
        self._last_state: P.State | None = None
        self.watchdog = HostWatchdog(self, wiring.watchdog_ms / 1000) if not self.model.has("bus_watchdog") else None

    # ---- lifecycle

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self._map.host_names

    def _timing(self) -> None:
        """The link follows `config` (the runtime relaxes it for start and stop)."""
        self.link.timeout_s, self.link.retries = self.config.timeout_s, self.config.retries

    def connect(self) -> None:
        self.link.open()
        self.imu.open()

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        self.link.close()
        self.imu.close()

    def __enter__(self) -> BusDriver:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def handshake(self) -> P.Info:
        """Every servo robot.yaml names must answer with the wired model; the IMU must be fusing.
        The robot's joint order is robot.yaml's; its name is the robot's."""
        self.connect()
        with self._lock:
            missing, wrong = [], []
            for name, sid in zip(self.names, self.ids):
                try:
                    number = self._model_number(sid)
                except LinkTimeout:
                    missing.append(f"{name} (id {sid})")
                    continue
                if number != self.model.model_number:
                    wrong.append(f"{name} (id {sid}) is model {number}, not {self.model.name} ({self.model.model_number})")
            if missing:
                raise HandshakeError(f"servo bus {self.url}: no reply from {', '.join(missing)}; check "
                                     f"power, wiring, ids and baud rate ({self.wiring.baudrate}) with "
                                     f"`simreal servos scan --port {self.url}`")
            if wrong:
                raise HandshakeError(f"servo bus {self.url}: " + "; ".join(wrong))
            self.imu.check()
        caps = P.Capability.GAINS if self.model.has("bus_watchdog") else 0
        wd = self.wiring.watchdog_ms
        self.info = P.Info(self.spec.name, tuple(self.names), FIRMWARE, P.PROTOCOL_VERSION, wd, int(caps))
        return self.info

    def _model_number(self, sid: int) -> int:
        self._timing()
        if self.wiring.family == "dynamixel":
            (pkt,) = self.link.transact(self.codec.ping(sid), [sid], reply_bytes=14, what=f"ping servo {sid}",
                                        timeout_s=max(self.config.timeout_s, 0.01), retries=1)
            if len(pkt.params) < 3:
                raise LinkTimeout(f"ping servo {sid}: short reply")
            return pkt.params[0] | pkt.params[1] << 8
        r = self.model.reg("model_number")
        (pkt,) = self.link.transact(self.codec.read(sid, r.address, r.size), [sid], reply_bytes=8,
                                    what=f"read servo {sid} model", timeout_s=max(self.config.timeout_s, 0.01),
                                    retries=1)
        if len(pkt.params) != r.size:
            raise LinkTimeout(f"read servo {sid} model: {len(pkt.params)} bytes")
        return r.decode(pkt.params)

    # ---- per cycle

    def read_state(self) -> P.State:
        return self._state(check_fault=True)

    def send_command(self, q_target: Values, kp_scale: Values | None = None,
                     kd_scale: Values | None = None, *, budget_s: float | None = None) -> P.State:
        q = np.asarray(self._map.to_robot(q_target, "q_target"), dtype=np.float64)
        if not np.all(np.isfinite(q)):
            raise ValueError("q_target holds a non-finite value")
        with self._lock:
            if kp_scale is not None and self.model.has("bus_watchdog"):
                kp = self._map.to_robot(kp_scale, "kp_scale")
                kd = self._map.to_robot(kd_scale if kd_scale is not None else kp_scale, "kd_scale")
                self._write_gains(np.asarray(kp), np.asarray(kd))
            self._write_goals(q)
            if self.mode == "hold":
                self.mode = "position"
            if self._last_state is None:
                return self._state(check_fault=True)
            # A SYNC WRITE earns no reply on these buses: the answer is the state last read (this
            # cycle's), with the mode now in force; reading it all again would double the bus time.
            # Its timestamp does not advance, so --pipelined trips the stale-state check (C4).
            return dataclasses.replace(self._last_state, status=self._status_bits())

    def enable_torque(self) -> P.State:
        with self._lock:
            if self.calibration is None:
                raise NotCalibrated("torque refused: no calibration (run `simreal calibrate`)")
            state = self._state(check_fault=True)      # goals := where the joints are: no jump
            self._write_goals(np.asarray(state.q))
            if self.model.has("torque_limit"):
                self._sync_write("torque_limit", [1000] * len(self.ids))
            if self.model.has("bus_watchdog"):
                self._sync_write("bus_watchdog", [0] * len(self.ids))          # clear a tripped one
                self._write_gains(np.ones(len(self.ids)), np.ones(len(self.ids)))
            self._sync_write("torque_enable", [1] * len(self.ids))
            self._confirm_torque(True)
            if self.model.has("bus_watchdog"):
                self._sync_write("bus_watchdog", [max(1, self.wiring.watchdog_ms // 20)] * len(self.ids))
            self.mode = "position"
            if self.watchdog is not None:
                self.watchdog.arm()
            return self._state(check_fault=False)

    def disable_torque(self) -> P.State:
        with self._lock:
            if self.watchdog is not None:
                self.watchdog.disarm()
            self._sync_write("torque_enable", [0] * len(self.ids))
            self._confirm_torque(False)
            self.mode = "off"
            return self._state(check_fault=False)

    def damp(self) -> P.State:
        """Position servos have no damping mode: hold where the joints are, softly."""
        with self._lock:
            state = self._state(check_fault=False)
            if self.model.has("torque_limit"):
                self._sync_write("torque_limit", [DAMP_TORQUE] * len(self.ids))
            else:
                self._write_gains(np.full(len(self.ids), DAMP_GAIN), np.zeros(len(self.ids)))
            self._write_goals(np.asarray(state.q))
            if self.mode != "off":
                self.mode = "damp"
            return self._state(check_fault=False)

    def hold(self) -> P.State:
        with self._lock:
            state = self._state(check_fault=False)
            self._write_goals(np.asarray(state.q))
            if self.mode != "off":
                self.mode = "hold"
            return self._state(check_fault=False)

    def heartbeat(self) -> P.HeartbeatAck:
        s = self.read_state()
        return P.HeartbeatAck(s.timestamp_us, s.status, s.errors)

    def clear_errors(self) -> P.State:
        """Latched servo errors clear when their cause is gone (Feetech) or after a reboot
        (Dynamixel: REBOOT, which also turns torque off)."""
        with self._lock:
            state = self._state(check_fault=False)
            if state.errors and self.wiring.family == "dynamixel":
                for sid in self.ids:
                    self.link.send(self.codec.instruction(sid, dynamixel.Instr.REBOOT))
                    time.sleep(0.002)
                state = self._state(check_fault=False)
            if state.errors:
                raise RemoteError(P.Error(P.ErrorCode.REFUSED, P.MsgType.CLEAR_ERRORS,
                                          f"cause still present: {P.Fault(state.errors)!r}"))
            self._over_load[:] = 0
            return state

    def reset(self, q=None, *, seed: int = 0, base_pos=None, base_quat=None) -> P.State:
        raise NotSupported("a servo bus carries no simulator requests (SIM_RESET)")

    def ground_truth(self) -> P.SimGroundTruth:
        raise NotSupported("a servo bus carries no simulator requests (SIM_GET_GROUND_TRUTH)")

    # ---- register traffic

    def _sync_write(self, register: str, values: Sequence[int]) -> None:
        r = self.model.reg(register)
        self.link.send(self.codec.sync_write(r.address, r.size, {sid: r.encode(v) for sid, v in zip(self.ids, values)}))

    def _write_goals(self, q: np.ndarray) -> None:
        c, m = self.calibration, self.model
        if c is None:
            raise NotCalibrated("no calibration: goal positions cannot be converted to ticks")
        ticks = [min(max(c.to_ticks(n, float(v), m), 0), m.ticks_per_rev - 1) for n, v in zip(self.names, q)]
        self._sync_write("goal_position", ticks)
        self._goals_since_read += 1
        if self.watchdog is not None:
            self.watchdog.feed()

    def _write_gains(self, kp: np.ndarray, kd: np.ndarray) -> None:
        key = (kp.tobytes(), kd.tobytes())
        if key == self._gain_scales:
            return
        g = self.wiring.gains
        p0, d0 = (g.p, g.d) if g else (400, 0)
        self._sync_write("p_gain", [int(round(p0 * k)) for k in np.clip(kp, 0, P.MAX_GAIN_SCALE)])
        self._sync_write("d_gain", [int(round(d0 * k)) for k in np.clip(kd, 0, P.MAX_GAIN_SCALE)])
        self._gain_scales = key

    def _confirm_torque(self, on: bool) -> None:
        self._timing()
        r = self.model.reg("torque_enable")
        pkts = self.link.transact(self.codec.sync_read(r.address, 1, self.ids), self.ids,
                                  reply_bytes=len(self.ids) * self.codec.reply_length(1),
                                  what="read torque enable")
        off = [n for n, p in zip(self.names, pkts) if len(p.params) != 1 or bool(p.params[0]) != on]
        if off:
            raise LinkTimeout(f"torque {'on' if on else 'off'} not confirmed by {off}")

    def _state(self, *, check_fault: bool) -> P.State:
        with self._lock:
            self._timing()
            first, length = self.model.state_block
            pkts = self.link.transact(self.codec.sync_read(first, length, self.ids), self.ids,
                                      reply_bytes=len(self.ids) * self.codec.reply_length(length),
                                      what="sync read of the servo state", check=self._plausible)
            sample = self.imu.read()
            t = self.clock()
            q, dq, load, volt, temp, err = self._decode(pkts)
            self._last_q, self._last_t, self._goals_since_read = q, t, 0
            if self.watchdog is not None:
                self.watchdog.feed()
        errors, joints = self._faults(pkts, load, volt, temp, err)
        state = P.State(int(t * 1e6), self._status_bits(), int(errors), int(joints), tuple(q.tolist()),
                        tuple(dq.tolist()), sample.quat, sample.gyro, sample.accel)
        state = self._last_state = self._map.state_to_host(state)
        if check_fault and state.faulted:
            raise DeviceFault(fault_text(self.url, state, self.joint_names), state)
        return state

    def _status_bits(self) -> int:
        """What the driver knows of the robot's mode (the servos report no such thing)."""
        status = P.Status.CALIBRATED if self.calibration is not None else 0
        if self.mode != "off":
            status |= P.Status.TORQUE_ON
        return int(status | {"damp": P.Status.DAMPING, "hold": P.Status.HOLDING}.get(self.mode, 0))

    def _decode(self, pkts: list[Packet]):
        m, c = self.model, self.calibration
        first = m.state_block[0]
        n = len(pkts)
        q, dq, load, volt, temp, err = (np.zeros(n) for _ in range(6))
        for i, (name, p) in enumerate(zip(self.names, pkts)):
            def get(reg: str) -> int:
                r = m.reg(reg)
                return r.decode(p.params, r.address - first)
            ticks = get("present_position")
            d = c.joints[name].direction if c is not None else 1
            q[i] = c.to_rad(name, ticks, m) if c is not None else m.ticks_to_rad(ticks)
            dq[i] = d * get("present_velocity") * m.velocity_lsb
            load[i] = abs(get("present_load" if m.has("present_load") else "present_current")) * m.load_lsb
            volt[i] = get("present_voltage") * m.voltage_lsb
            temp[i] = get("present_temperature")
            err[i] = get("hardware_error") if "hardware_error" in m.state else 0   # Dynamixel: ALERT bit
        return q, dq, load, volt, temp, err

    def _plausible(self, pkts: list[Packet]) -> str:
        """Why these replies cannot be true ("" when they can)."""
        m = self.model
        first, length = m.state_block
        if any(len(p.params) != length for p in pkts):
            return f"a reply of the wrong length (want {length} bytes)"
        q, dq, load, volt, temp, _ = self._decode(pkts)
        ticks = [m.reg("present_position").decode(p.params, m.reg("present_position").address - first) for p in pkts]
        for name, t in zip(self.names, ticks):
            if not 0 <= t < m.ticks_per_rev:
                return f"{name}: position {t} ticks outside the encoder's 0-{m.ticks_per_rev - 1}"
        if self._last_q is not None:
            # elapsed robot time: at least the host's, and a period per goal write (on hardware the
            # two agree; a lockstep mock moves a period per goal write whatever the host's clock says)
            dt = max(self.clock() - self._last_t, self._goals_since_read * self.period_s)
            allowed = SPEED_FACTOR * m.max_speed * dt + POSITION_MARGIN
            jump = np.abs(q - self._last_q)
            if jump.max() > allowed:
                j = int(np.argmax(jump))
                return (f"{self.names[j]}: moved {jump[j]:.3f} rad in {dt * 1000:.0f} ms, faster than the "
                        f"servo can ({m.max_speed:.1f} rad/s)")
        if np.abs(dq).max() > 2 * SPEED_FACTOR * m.max_speed:
            j = int(np.argmax(np.abs(dq)))
            return f"{self.names[j]}: speed {dq[j]:.1f} rad/s is beyond the servo's"
        if load.max() > 1.5:
            return f"{self.names[int(np.argmax(load))]}: load {load.max():.2f} of stall"
        if volt.min() <= 0 or volt.max() > 25 or temp.max() > 150:
            return "voltage or temperature out of any real range"
        return ""

    def _faults(self, pkts, load, volt, temp, err) -> tuple[int, int]:
        """Fault bits and the joints they concern: the servos' own error bits, then the software
        limits of bus.yaml."""
        lim, m = self.wiring.limits, self.model
        errors, joints = 0, 0
        self._over_load = np.where(load > lim.max_load, self._over_load + 1, 0)
        for i, p in enumerate(pkts):
            bits = 0
            for bit, name in m.error_bits.items():
                if int(err[i]) >> bit & 1:
                    bits |= P.Fault[name]
            if self.wiring.family == "dynamixel" and p.code & dynamixel.ALERT:
                bits |= P.Fault.SERVO_ALERT | self._hardware_error(self.ids[i])
            if temp[i] > lim.max_temperature:
                bits |= P.Fault.OVERHEAT
            if self._over_load[i] >= lim.load_cycles:
                bits |= P.Fault.OVERLOAD
            if not lim.min_voltage <= volt[i] <= lim.max_voltage:
                bits |= P.Fault.VOLTAGE
            if bits:
                errors |= bits
                joints |= 1 << i
        return errors, joints


    def _hardware_error(self, sid: int) -> int:
        """A Dynamixel status packet's ALERT bit says an error is latched; register 70 says which."""
        r = self.model.reg("hardware_error")
        try:
            (pkt,) = self.link.transact(self.codec.read(sid, r.address, r.size), [sid],
                                        reply_bytes=self.codec.reply_length(r.size), what=f"read servo {sid}'s error")
        except DriverError:
            return 0                      # the ALERT bit alone is already a device fault
        value = r.decode(pkt.params) if len(pkt.params) == r.size else 0
        return sum(int(P.Fault[name]) for bit, name in self.model.error_bits.items() if value >> bit & 1)


class HostWatchdog:
    """Feetech STS servos have no bus watchdog: this thread turns their torque off (one broadcast
    write) when the driver has not been fed for `timeout_s` while torque is on. It covers a control
    loop that hangs or dies inside a live process; it cannot cover a killed process or host."""

    def __init__(self, driver: BusDriver, timeout_s: float):
        self.driver, self.timeout_s = driver, timeout_s
        self._fed = time.monotonic()
        self._armed = False
        self._stop = threading.Event()
        self.trips = 0
        self._thread: threading.Thread | None = None

    def feed(self) -> None:
        self._fed = time.monotonic()

    def arm(self) -> None:
        self.feed()
        self._armed = True
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="host-watchdog", daemon=True)
            self._thread.start()

    def disarm(self) -> None:
        self._armed = False

    def stop(self) -> None:
        self._armed = False
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.timeout_s / 4):
            if self._armed and time.monotonic() - self._fed > self.timeout_s:
                d = self.driver
                if not d._lock.acquire(timeout=self.timeout_s):
                    continue
                try:
                    r = d.model.reg("torque_enable")
                    d.link.send(d.codec.write(d.codec.BROADCAST_ID, r.address, r.encode(0)))
                    d.mode = "off"
                    self._armed = False
                    self.trips += 1
                except DriverError:
                    pass
                finally:
                    d._lock.release()
