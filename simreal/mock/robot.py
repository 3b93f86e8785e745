"""The mock robot: the robot's MuJoCo model behind a pseudo-terminal, speaking the ROBOT side of
docs/protocol.md, so `simreal deploy` runs the same runtime, driver and protocol with or without
hardware (hardware-in-the-loop tests are only meaningful because nothing else changes).

    simreal mock-robot quadruped --gap worn --faults drop=0.02,stall_at=5:0.5 --seed 1
    PORT /dev/pts/5                       <- first line of stdout; point `simreal deploy` at it

Behaviour (each choice is what firmware on a real robot would do):

* Real time: physics runs on the mock's own monotonic clock, not in lockstep with commands. A
  request read at wall time t is served at t + request wire time + latency + U(0, jitter) (in
  arrival order); the state it returns is the physics at that moment (at most one physics step
  old; its timestamp is the serving time in microseconds) and it reaches the host one reply wire
  time later (bytes x 10 / baud). Idle, physics advances in bursts of BURST_S; before anything is
  served or fired it is caught up to the exact moment. `--lockstep` (unit tests): each COMMAND
  advances exactly one control period, replies leave at once, the clock is simulated time and the
  watchdog is off; the same seed and requests give the same bytes.
* Servo modes: torque off (no drive; the robot starts limp and sinks to the floor), position
  (PD to the targets; COMMAND gain scales honoured), DAMP (kp = 0, the servo's kd kept: it sags
  slowly). TORQUE 1 starts from the measured pose; HOLD re-targets the measured pose (a later
  COMMAND drives again); DAMP stays until TORQUE or HOLD. With torque off, COMMAND/HOLD/DAMP
  move nothing. Targets are clamped to the robot's joint limits; non-finite values are refused.
* Backlash b (rad, total gear play) is a play operator between the commanded target and the
  servo's target: target_servo = clip(target_servo, cmd - b/2, cmd + b/2), so the joint settles up
  to b/2 from the command depending on the approach direction (gear play's steady-state effect,
  not its impact dynamics).
* Target slew (gap `target_slew`, rad/s; the STS3215's firmware ~5.2): the servo walks its own
  target toward the commanded one at most this fast (simreal.mock.bus_firmware sets it in
  Feetech mode). `hold_joints(q)`: an operator's hands pose the joints (calibration).
* Watchdog (faults.md C9): with torque on and no valid request for watchdog_ms, the robot goes to
  DAMP, sets WATCHDOG, and turns torque off `watchdog_damp_s` later. WATCHDOG clears on TORQUE 1.
* Faults: `simreal.mock.faults` (schedule and per-reply faults, all seeded).
* Ground truth (SIM_GET_GROUND_TRUTH): base pose and velocity, sim time since the last reset,
  fallen (tilt above task.max_tilt_deg or base below task.min_base_height). The JSON report
  (--report, and a `REPORT {...}` line on stderr at exit) adds what was injected, request and
  link counters, falls (standing -> fallen while powered) and watchdog trips.

The process exits cleanly on SIGTERM/SIGINT/SIGHUP, `--duration`, `disconnect_at`, or stdin EOF
with `--stdin-lifeline`. `spawn()` starts one for tests and demos.
"""
from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from simreal import protocol as P
from simreal.envs import servo as servo_model
from simreal.mock.faults import FAULT_KINDS, FaultSchedule, FaultSpecError, Injected, TimedFault
from simreal.mock.gap import GapProfile

PORT_PREFIX = "PORT "
FIRMWARE = (0, 1, 0)
BURST_S = 0.02                  # idle physics is stepped in bursts this long (fewer wake-ups)
_FAULT_BITS = {k: P.Fault[k.upper()] for k in FAULT_KINDS}
_REQUESTS = (P.Hello, P.GetState, P.Command, P.Torque, P.Hold, P.Damp, P.Heartbeat, P.ClearErrors,
             P.SimReset, P.SimGetGroundTruth)


@dataclass(frozen=True)
class RobotOptions:
    watchdog_s: float = 0.2         # 0: no watchdog
    watchdog_damp_s: float = 0.3
    calibrated: bool = True
    lockstep: bool = False
    simulated: bool = True          # False: plays hardware (no SIMULATED flag; SIM_* requests UNSUPPORTED)
    hoisted: bool = False           # the base hangs from a stand, feet in the air (Simulator.hoist; sysid)
    held: bool = False              # a person holds the base as it stands until torque goes on (bus modes: no reset)


class MockRobot:
    """The robot itself: simulator + gap + servo modes + flags + timed faults. No I/O.

    `clock` is the mock's time in seconds that physics has reached (it survives SIM_RESET, so
    timestamps stay monotonic); `handle(frame, now)` serves one request at mock time `now`.
    """

    def __init__(self, spec, gap: GapProfile, schedule: FaultSchedule, seed: int = 0,
                 options: RobotOptions = RobotOptions()):
        from simreal.envs import randomization        # mujoco: imported only when a robot is made
        from simreal.envs.physics import Simulator

        self.spec, self.gap, self.options = spec, gap, options
        self.sim = sim = Simulator(spec)
        n = spec.n_joints
        sensor_seq, terrain_seq = np.random.SeedSequence(seed).spawn(2)
        self.sensor_rng = np.random.default_rng(sensor_seq)
        self.params = gap.domain_params(n, sim.model.nbody - 1)
        randomization.apply(sim, self.params, np.random.default_rng(terrain_seq))
        if gap.encoder_ticks_per_rev:
            sim.encoder_resolution = 2 * np.pi / gap.encoder_ticks_per_rev
        sim.reset()
        if options.hoisted:
            sim.hoist()
        self.dt = float(sim.model.opt.timestep)
        self._held_base = sim.data.qpos[0:7].copy() if options.held else None
        self.steps = 0
        self._tilt_limit = math.radians(spec.task.max_tilt_deg)
        self._spawn_z = float(sim.model.body_pos[sim.base_id][2])
        # servo side
        self.mode = "off"               # off | position | damp
        self.holding = False
        self.kp_scale = np.ones(n)
        self.kd_scale = np.ones(n)
        self.torque_scale = np.ones(n)  # a bus servo's torque-limit register (stall torque and speed cap)
        self._retarget_measured()
        self._servo_key: tuple | None = None
        self._program_servos()
        # flags
        self.errors = 0
        self.fault_joints = 0
        self._causes: list[tuple[int, int]] = []     # device faults whose cause is still present
        self.estop_latched = False
        self._estop_pressed = 0
        self.watchdog_tripped = False
        self._watchdog_off_at = math.inf
        self.last_rx = 0.0
        # injected conditions
        self.injected = Injected()
        self.tilt_quat: np.ndarray | None = None
        self.hands: np.ndarray | None = None   # an operator holding the joints at these encoder angles (calibration)
        self.nan_queue: collections.deque[str] = collections.deque()   # channels of the next NaN replies
        self.encoder_slip = np.zeros(n)
        self._frozen_us: int | None = None
        self._freeze_depth = 0
        self._stall_depth = 0
        self.disconnected = False
        self.fallen = self._is_fallen()
        self.falls = 0
        self.watchdog_trips = 0
        self.watchdog_log: list[tuple[float, str]] = []   # (mock time, "damp" | "off"): what the watchdog did
        self.requests: collections.Counter[str] = collections.Counter()
        self._events: list[tuple[float, int, Callable[[TimedFault, float], None], TimedFault]] = []
        self._build_events(schedule)

    # ---- clock and physics

    @property
    def clock(self) -> float:
        return self.steps * self.dt

    @property
    def stalled(self) -> bool:
        return self._stall_depth > 0

    def step_physics(self) -> None:
        sim = self.sim
        if self.tilt_quat is not None:      # tilt_at: the base is held over at the injected angle
            sim.data.qpos[3:7] = self.tilt_quat
            sim.data.qvel[3:6] = 0.0
        if self._held_base is not None:     # held upright until torque is on, then let go for good
            if self.mode == "off":
                sim.data.qpos[0:7] = self._held_base
                sim.data.qvel[0:6] = 0.0
            else:
                self._held_base = None
        if self.hands is not None:          # the operator's hands pose the joints (torque off: calibration)
            sim.data.qpos[sim.qpos_idx] = self.hands - sim.encoder_offset
            sim.data.qvel[sim.dof_idx] = 0.0
        if self.gap.target_slew:        # the firmware walks its own target toward the goal at a bounded rate
            step = self.gap.target_slew * self.dt
            self.firmware_target = self.firmware_target + np.clip(self.servo_target - self.firmware_target, -step, step)
            sim.step(self.firmware_target, 1)
        else:
            sim.step(self.servo_target, 1)
        self.steps += 1
        fallen = self._is_fallen()
        if fallen and not self.fallen and self.mode != "off":
            self.falls += 1
        self.fallen = fallen

    def _is_fallen(self) -> bool:
        return bool(self.sim.tilt() > self._tilt_limit or self.sim.base_height() < self.spec.task.min_base_height)

    def next_time(self) -> float:
        """When tick() next has something to do (a scheduled fault or a watchdog timer)."""
        return min(self._events[0][0] if self._events else math.inf, self._watchdog_deadline(),
                   self._watchdog_off_at)

    def tick(self, t: float) -> None:
        """Fire the scheduled faults and watchdog timers due by mock time t."""
        while self._events and self._events[0][0] <= t:
            at, _, handler, fault = heapq.heappop(self._events)
            handler(fault, at)
        if self._watchdog_deadline() <= t:
            self.watchdog_tripped = True
            self.watchdog_trips += 1
            self._set_mode("damp")
            self.watchdog_log.append((t, "damp"))
            self._watchdog_off_at = t + self.options.watchdog_damp_s
        if self._watchdog_off_at <= t:
            self.watchdog_log.append((t, "off"))
            self._watchdog_off_at = math.inf
            self._set_mode("off")

    def note_request(self, frame: P.Frame, t: float) -> None:
        """A valid request arrived at mock time t: it feeds the watchdog (not with tag 0, which is
        refused unexecuted)."""
        if not frame.tag:
            return
        self.last_rx = t

    def _watchdog_deadline(self) -> float:
        if self.options.watchdog_s <= 0 or self.mode == "off" or self.watchdog_tripped:
            return math.inf
        return self.last_rx + self.options.watchdog_s

    # ---- servo model

    def _encoders(self) -> np.ndarray:
        """The servos' own (quantized, offset, noise-free) position readings: what HOLD holds."""
        return self.sim.measure().joint_pos

    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        self.holding = False
        self._program_servos()

    def _program_servos(self) -> None:
        """Write the mode's gains into the actuators (the shared servo model, Simulator's code path)."""
        key = (self.mode, self.kp_scale.tobytes(), self.kd_scale.tobytes(), self.torque_scale.tobytes())
        if key == self._servo_key:
            return
        self._servo_key = key
        s, zero = self.sim.servo, np.zeros(self.spec.n_joints)
        kp = s.kp * self.kp_scale if self.mode == "position" else zero
        kd = zero if self.mode == "off" else s.kd * (self.kd_scale if self.mode == "position" else 1.0)
        servo_model.write_to_model(self.sim.model, self.sim.act_idx, self.sim.dof_idx,
                                   servo_model.ServoParams(kp, kd, s.torque_limit * self.torque_scale,
                                                           s.velocity_limit * self.torque_scale),
                                   self.sim.joint_damping)

    def hold_joints(self, q: np.ndarray | None) -> None:
        """An operator's hands hold the joints at these encoder angles (None: let go); applied at
        once, so a lockstep mock (whose physics moves only on COMMAND) reads them too."""
        import mujoco

        self.hands = None if q is None else np.asarray(q, dtype=np.float64)
        if self.hands is not None:
            self.sim.data.qpos[self.sim.qpos_idx] = self.hands - self.sim.encoder_offset
            self.sim.data.qvel[self.sim.dof_idx] = 0.0
            mujoco.mj_forward(self.sim.model, self.sim.data)

    def set_drive(self, kp_scale: np.ndarray, kd_scale: np.ndarray, torque_scale: np.ndarray) -> None:
        """Gains and torque limit from a bus servo's registers (simreal.mock.bus_firmware)."""
        self.kp_scale, self.kd_scale = np.asarray(kp_scale, float), np.asarray(kd_scale, float)
        self.torque_scale = np.asarray(torque_scale, float)
        self._program_servos()

    def _retarget_measured(self) -> None:
        """Servo targets := the measured pose; commands still in the firmware's queue are dropped."""
        self.servo_target = self.firmware_target = self._encoders()
        self._queued = collections.deque([self.servo_target] * (self.gap.action_delay + 1),
                                         maxlen=self.gap.action_delay + 1)

    def _drive(self, q: np.ndarray) -> None:
        """New commanded targets through the gear play (backlash) to the servo."""
        half = self.gap.backlash / 2
        self.servo_target = np.clip(self.servo_target, q - half, q + half) if half else q

    # ---- sensors

    def _measure(self):
        """What the robot reports: the simulator's encoders/IMU with the gap's noise and bias
        (simreal.envs.sensors, the same sensor model as the training env)."""
        from simreal.envs.sensors import add_noise

        s = add_noise(self.sim.measure(), self.params.noise, self.params.imu_bias, self.sensor_rng)
        return s.joint_pos, s.joint_vel, s.quat, s.gyro, s.accel

    @property
    def status(self) -> int:
        s = (P.Status.SIMULATED if self.options.simulated else 0) | (P.Status.CALIBRATED if self.options.calibrated else 0)
        if self.mode != "off":
            s |= P.Status.TORQUE_ON
        if self.mode == "damp":
            s |= P.Status.DAMPING
        if self.mode == "position" and self.holding:
            s |= P.Status.HOLDING
        if self.estop_latched:
            s |= P.Status.ESTOP
        if self.watchdog_tripped:
            s |= P.Status.WATCHDOG
        return int(s)

    def _timestamp_us(self, now: float) -> int:
        return self._frozen_us if self._frozen_us is not None else int(round(now * 1e6))

    def state(self, now: float) -> P.State:
        q, dq, quat, gyro, accel = self._measure()
        if self.encoder_slip.any():        # encoder_slip_at: what the encoders read, not where the joint is
            q = q + self.encoder_slip
        if self.nan_queue:                 # nan_at: this reply carries a NaN in one channel
            values = {"gyro": gyro, "q": q, "dq": dq, "quat": quat}
            channel = self.nan_queue.popleft()
            values[channel] = values[channel].copy()
            values[channel][0] = math.nan
            gyro, q, dq, quat = values["gyro"], values["q"], values["dq"], values["quat"]
            self.injected.nan += 1
        return P.State(self._timestamp_us(now), self.status, self.errors, self.fault_joints, q.tolist(),
                       dq.tolist(), quat.tolist(), gyro.tolist(), accel.tolist())

    def info(self) -> P.Info:
        wd = 0 if self.options.lockstep else min(int(round(self.options.watchdog_s * 1000)), 0xFFFF)
        sim = P.Capability.SIMULATED if self.options.simulated else 0
        return P.Info(self.spec.name, tuple(self.spec.joint_names), FIRMWARE, P.PROTOCOL_VERSION, wd,
                      int(sim | P.Capability.GAINS))

    def ground_truth(self) -> P.SimGroundTruth:
        sim = self.sim
        return P.SimGroundTruth(sim.time, sim.base_pos().tolist(), sim.base_quat().tolist(),
                                sim.base_lin_vel_world().tolist(), sim.base_ang_vel_body().tolist(),
                                self.fallen)

    # ---- requests

    def handle(self, frame: P.Frame, now: float) -> P.Message:
        """Serve one valid request at mock time `now`; the reply message (never raises on bad input)."""
        m = frame.msg
        self.requests[m.TYPE.name] += 1
        if frame.tag == 0:              # reserved for the robot's own frames: never executed
            return P.Error(P.ErrorCode.BAD_REQUEST, m.TYPE, "tag 0 is reserved for unsolicited robot frames")
        if not isinstance(m, _REQUESTS):
            return P.Error(P.ErrorCode.UNKNOWN_TYPE, m.TYPE, f"{m.TYPE.name} is not a request")
        if isinstance(m, P.Hello):
            return self.info()
        if isinstance(m, P.Heartbeat):
            return P.HeartbeatAck(self._timestamp_us(now), self.status, self.errors)
        if isinstance(m, (P.SimReset, P.SimGetGroundTruth)) and not self.options.simulated:
            return P.Error(P.ErrorCode.UNSUPPORTED, m.TYPE, f"{m.TYPE.name}: robot {self.spec.name} is not a simulator")
        if isinstance(m, P.SimGetGroundTruth):
            return self.ground_truth()
        handler = {P.Command: self._command, P.Torque: self._torque, P.Hold: self._hold, P.Damp: self._damp,
                   P.ClearErrors: self._clear_errors, P.SimReset: self._reset}.get(type(m))
        error = handler(m) if handler else None
        if error is not None:
            return error
        if isinstance(m, P.Command) and self.options.lockstep:
            for _ in range(self.spec.control.substeps):
                self.tick(self.clock)
                self.step_physics()
            self.tick(self.clock)
            now = self.clock
        return self.state(now)

    def _joint_array(self, req: P.Message, name: str, values: Sequence[float], *, gain: bool = False):
        """(array, None) or (None, ERROR): length and finiteness (gain scales: the range
        [0, MAX_GAIN_SCALE]) checked, naming the joint."""
        n = self.spec.n_joints
        if len(values) != n:
            return None, P.Error(P.ErrorCode.JOINT_COUNT, req.TYPE,
                                 f"{name} has {len(values)} joints, robot {self.spec.name} has {n}")
        a = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(a) | (((a < 0) | (a > P.MAX_GAIN_SCALE)) if gain else False)
        if bad.any():
            j = int(np.argmax(bad))
            return None, P.Error(P.ErrorCode.BAD_REQUEST, req.TYPE,
                                 f"{name}[{self.spec.joint_names[j]}] = {a[j]} is not allowed")
        return a, None

    def _command(self, m: P.Command) -> P.Error | None:
        q, err = self._joint_array(m, "q", m.q)
        if err:
            return err
        kp = kd = np.ones(len(q))
        if m.kp_scale is not None:
            kp, err = self._joint_array(m, "kp_scale", m.kp_scale, gain=True)
            if err:
                return err
            kd, err = self._joint_array(m, "kd_scale", m.kd_scale, gain=True)
            if err:
                return err
        if self.estop_latched:
            return None                 # ignored under e-stop; the STATE says ESTOP
        self.kp_scale, self.kd_scale = kp, kd
        if self.mode == "position":
            self.holding = False
            # gap.action_delay: the servos take the target of the COMMAND that many frames back
            self._queued.append(np.clip(q, self.spec.joint_min, self.spec.joint_max))
            self._drive(self._queued[0])
        self._program_servos()
        return None

    def _torque(self, m: P.Torque) -> P.Error | None:
        if not m.enable:
            self._watchdog_off_at = math.inf
            self._set_mode("off")
            return None
        why = [w for w, bad in (("error flags are latched", self.errors), ("e-stop is latched", self.estop_latched),
                                ("joints are not calibrated", not self.options.calibrated)) if bad]
        if why:
            return P.Error(P.ErrorCode.REFUSED, m.TYPE, "torque refused: " + ", ".join(why))
        self.watchdog_tripped = False
        self._watchdog_off_at = math.inf
        self.kp_scale = self.kd_scale = np.ones(self.spec.n_joints)
        self._retarget_measured()
        self._set_mode("position")
        return None

    def _hold(self, m: P.Hold) -> None:
        self._retarget_measured()
        if self.mode != "off":
            self._set_mode("position")
            self.holding = True

    def _damp(self, m: P.Damp) -> None:
        if self.mode != "off":
            self._set_mode("damp")

    def _clear_errors(self, m: P.ClearErrors) -> P.Error | None:
        causes = [P.Fault(bits).name or str(bits) for bits, _ in self._causes]
        if self._estop_pressed:
            causes.append("e-stop still pressed")
        if causes:
            return P.Error(P.ErrorCode.REFUSED, m.TYPE, "cause still present: " + ", ".join(causes))
        self.errors = self.fault_joints = 0
        self.estop_latched = False
        return None

    def _reset(self, m: P.SimReset) -> P.Error | None:
        pose = None
        if m.q is not None:
            pose, err = self._joint_array(m, "q", m.q)
            if err:
                return err
            pose = pose - self.sim.encoder_offset      # so that the encoders then read q
        base = None
        if m.base_pos is not None:
            base = np.array([*m.base_pos, *m.base_quat], dtype=np.float64)
            norm = np.linalg.norm(base[3:])
            if not np.all(np.isfinite(base)) or norm < 1e-6:
                return P.Error(P.ErrorCode.BAD_REQUEST, m.TYPE, "base pose must be finite with a non-zero quaternion")
            base[3:] /= norm
        if m.seed:
            self.sensor_rng = np.random.default_rng(np.random.SeedSequence(m.seed).spawn(2)[0])
        self.sim.reset(pose=pose)
        if base is not None:
            self.sim.data.qpos[0:7] = base
            import mujoco

            mujoco.mj_forward(self.sim.model, self.sim.data)
        if self.options.hoisted:
            self.sim.hoist()
        self._retarget_measured()
        self.holding = False
        self.fallen = self._is_fallen()
        return None

    # ---- scheduled faults

    def _build_events(self, schedule: FaultSchedule) -> None:
        # kind -> (what happens at `at`, what happens `duration` later or None): one table, no lookup by name
        handlers = {
            "stall": (self._on_stall_begin, self._on_stall_end),
            "disconnect": (self._on_disconnect, None),
            "device_fault": (self._on_fault_begin, self._on_fault_end),
            "tilt": (self._on_tilt_begin, self._on_tilt_end),
            "nan": (self._on_nan, None),
            "freeze_timestamp": (self._on_freeze_begin, self._on_freeze_end),
            "estop": (self._on_estop_begin, self._on_estop_end),
            "encoder_slip": (self._on_slip_begin, self._on_slip_end),
        }
        seq = itertools.count()
        for f in schedule.timed:
            begin, end = handlers[f.kind]
            if f.kind == "device_fault":
                f = dataclasses.replace(f, joint=str(self._joint_mask(f.joint)))
            if f.kind == "encoder_slip":
                self._joint_index(f.joint)          # refuse an unknown joint now, not mid-run
            heapq.heappush(self._events, (f.at, next(seq), begin, f))
            if end is not None and math.isfinite(f.duration):
                heapq.heappush(self._events, (f.at + f.duration, next(seq), end, f))

    def _joint_mask(self, joint: str) -> int:
        names = self.spec.joint_names
        if joint == "all":
            return (1 << len(names)) - 1
        if joint in names:
            return 1 << names.index(joint)
        if joint.isdigit() and int(joint) < len(names):
            return 1 << int(joint)
        raise FaultSpecError(f"--faults device_fault: joint {joint!r} is not 'all', an index < {len(names)} "
                             f"or one of {names}")

    def _joint_index(self, joint: str) -> int:
        names = self.spec.joint_names
        if joint in names:
            return names.index(joint)
        if joint.isdigit() and int(joint) < len(names):
            return int(joint)
        raise FaultSpecError(f"--faults encoder_slip: joint {joint!r} is not an index < {len(names)} "
                             f"or one of {names}")

    def _log(self, at: float, kind: str, detail: str = "") -> None:
        self.injected.events.append((round(at, 6), kind, detail))

    def _on_stall_begin(self, f: TimedFault, at: float) -> None:
        self._stall_depth += 1
        self.injected.stall += 1
        self._log(at, "stall", f"{f.duration:g} s")

    def _on_stall_end(self, f: TimedFault, at: float) -> None:
        self._stall_depth -= 1

    def _on_disconnect(self, f: TimedFault, at: float) -> None:
        self.disconnected = True
        self.injected.disconnect += 1
        self._log(at, "disconnect")

    def _on_fault_begin(self, f: TimedFault, at: float) -> None:
        bits, mask = int(_FAULT_BITS[f.fault]), int(f.joint)
        self.errors |= bits
        self.fault_joints |= mask
        self._causes.append((bits, mask))
        self.injected.device_fault += 1
        self._log(at, "device_fault", f"{f.fault} joints 0x{mask:x}")

    def _on_fault_end(self, f: TimedFault, at: float) -> None:
        self._causes.remove((int(_FAULT_BITS[f.fault]), int(f.joint)))

    def _on_tilt_begin(self, f: TimedFault, at: float) -> None:
        a = math.radians(f.value)
        self.tilt_quat = np.array([math.cos(a / 2), math.sin(a / 2), 0.0, 0.0])
        qpos = self.sim.data.qpos
        qpos[2] = max(qpos[2], self._spawn_z)
        qpos[3:7] = self.tilt_quat          # pushed over now: the next reply shows it, physics step or not
        import mujoco

        mujoco.mj_forward(self.sim.model, self.sim.data)
        self.injected.tilt += 1
        self._log(at, "tilt", f"{f.value:g} deg")

    def _on_tilt_end(self, f: TimedFault, at: float) -> None:
        self.tilt_quat = None

    def _on_nan(self, f: TimedFault, at: float) -> None:
        self.nan_queue.extend([f.fault or "gyro"] * int(f.value))
        self._log(at, "nan", f"{int(f.value)} replies, {f.fault or 'gyro'}")

    def _on_slip_begin(self, f: TimedFault, at: float) -> None:
        self.encoder_slip[self._joint_index(f.joint)] += f.value
        self.injected.encoder_slip += 1
        self._log(at, "encoder_slip", f"{f.joint} {f.value:+g} rad")

    def _on_slip_end(self, f: TimedFault, at: float) -> None:
        self.encoder_slip[self._joint_index(f.joint)] -= f.value

    def _on_freeze_begin(self, f: TimedFault, at: float) -> None:
        if not self._freeze_depth:
            self._frozen_us = int(round(at * 1e6))
        self._freeze_depth += 1
        self.injected.freeze_timestamp += 1
        self._log(at, "freeze_timestamp")

    def _on_freeze_end(self, f: TimedFault, at: float) -> None:
        self._freeze_depth -= 1
        if not self._freeze_depth:
            self._frozen_us = None

    def _on_estop_begin(self, f: TimedFault, at: float) -> None:
        self._estop_pressed += 1
        self.estop_latched = True
        self._watchdog_off_at = math.inf
        self._set_mode("off")           # the e-stop cuts servo power
        self.injected.estop += 1
        self._log(at, "estop")

    def _on_estop_end(self, f: TimedFault, at: float) -> None:
        self._estop_pressed -= 1
