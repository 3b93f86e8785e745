"""Where a robot's forward velocity comes from when no simulator is watching.

A reward needs the base's velocity, which a real robot does not measure. Three sources, one
interface (`VelocitySource.velocity(state) -> Velocity | None`; None: no fresh estimate, so the
transition gets no reward and is not learned from):

* `GroundTruth`: the mock's SIM_GET_GROUND_TRUTH. **Privileged**: a real robot has none, so it is
  refused unless the robot is simulated (`make_source` says so by name).
* `Onboard`: leg kinematics with the IMU's orientation. The stance feet (the lowest ones) are
  taken to be still on the ground, so the base moves opposite to them; the gyro gives the yaw
  rate. Needs the robot's MJCF (mujoco) for the kinematics. Biased where feet slip.
* `Tracker`: an external pose feed (motion capture, AprilTag, a total station) over UDP, one ASCII
  line per pose, differenced here:

      <t_s> <x_m> <y_m> <yaw_rad>\\n        t in the tracker's own clock (monotonic), world frame

  A pose older than `max_age_s` (host clock, since it arrived) means no estimate.

Velocities are in the robot's heading frame (x forward, y left, level), like the command.
"""
from __future__ import annotations

import math
import socket
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from simreal import protocol as P
from simreal.robot.observation import heading_of


@dataclass(frozen=True)
class Velocity:
    vx: float          # m/s, forward along the heading
    vy: float          # m/s, left
    yaw_rate: float    # rad/s


class VelocitySource(Protocol):
    name: str
    privileged: bool

    def velocity(self, state: P.State) -> Velocity | None: ...
    def reset(self) -> None: ...                # a new episode: forget the last reading
    def close(self) -> None: ...


class VelocityError(ValueError):
    """A source that cannot be used here (privileged on hardware, a bad tracker address)."""


def to_heading(v_world: np.ndarray, yaw: float) -> tuple[float, float]:
    c, s = math.cos(yaw), math.sin(yaw)
    return float(c * v_world[0] + s * v_world[1]), float(-s * v_world[0] + c * v_world[1])


class GroundTruth:
    """The simulator's base velocity (privileged: the mock only), from anything with a
    `ground_truth()` (a driver, or the runtime's cycle record); the heading and yaw rate are the
    robot's own IMU's, as for the other sources."""
    name, privileged = "ground_truth", True

    def __init__(self, driver):
        self.driver = driver

    def velocity(self, state: P.State) -> Velocity | None:
        g = self.driver.ground_truth()
        if g is None:
            return None
        vx, vy = to_heading(np.asarray(g.base_lin_vel), float(heading_of(np.asarray(state.quat))))
        return Velocity(vx, vy, float(state.gyro[2]))

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


class Onboard:
    """Leg odometry: base velocity = minus the mean velocity of the stance feet relative to the
    base, rotated by the IMU's orientation, smoothed by an exponential filter of time constant
    `tau_s`. Stance: the lowest foot (no contact sensing on these robots)."""
    name, privileged = "onboard", False

    def __init__(self, spec, *, tau_s: float = 0.1):
        import mujoco

        from simreal.envs.physics import load_model

        self.spec, self.tau_s = spec, tau_s
        self.model = load_model(spec)
        self.data = mujoco.MjData(self.model)
        self._mj = mujoco
        ids = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in spec.joint_names]
        self.qadr = np.array([self.model.jnt_qposadr[i] for i in ids])
        self.feet = np.array([mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, f) for f in spec.feet])
        self.base = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, spec.base_body)
        self._last: tuple[float, np.ndarray] | None = None
        self._v = np.zeros(2)

    def feet_in_world(self, q, quat) -> np.ndarray:
        """Foot positions relative to the base, in a level frame with the IMU's orientation."""
        d = self.data
        d.qpos[:] = 0.0
        d.qpos[3:7] = quat
        d.qpos[self.qadr] = q
        self._mj.mj_kinematics(self.model, d)
        return d.geom_xpos[self.feet] - d.xpos[self.base]

    def velocity(self, state: P.State) -> Velocity | None:
        t = state.timestamp_us * 1e-6
        if not (np.all(np.isfinite(state.q)) and np.all(np.isfinite(state.quat))):
            self._last = None
            return None
        feet = self.feet_in_world(np.asarray(state.q), np.asarray(state.quat))
        last, self._last = self._last, (t, feet)
        if last is None or t <= last[0]:
            return None
        dt = t - last[0]
        # stance: the lowest foot over both readings (no contact sensing here; on the shipped
        # policies the lowest one is 13 % slower than the truth, the lower half 21 %: feet that
        # have just landed still move)
        low = np.argsort(feet[:, 2] + last[1][:, 2])[:1]
        v_world = -((feet - last[1]) / dt)[low].mean(axis=0)
        yaw = float(heading_of(np.asarray(state.quat)))
        a = 1.0 - math.exp(-dt / self.tau_s)
        self._v += a * (np.array(to_heading(v_world, yaw)) - self._v)
        return Velocity(float(self._v[0]), float(self._v[1]), float(state.gyro[2]))

    def reset(self) -> None:
        self._last = None
        self._v[:] = 0.0

    def close(self) -> None:
        pass


class Tracker:
    """Poses from an external tracker on a UDP port (see the module docstring for the line)."""
    name, privileged = "tracker", False

    def __init__(self, address: str, *, max_age_s: float = 0.1, window: int = 3):
        host, _, port = address.rpartition(":")
        try:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((host or "0.0.0.0", int(port)))
        except (ValueError, OSError) as exc:
            raise VelocityError(f"--velocity tracker:{address}: cannot listen there ({exc})") from None
        self.sock.settimeout(0.2)
        self.max_age_s, self.window = max_age_s, window
        self._poses: list[tuple[float, float, float, float, float]] = []   # (arrived, t, x, y, yaw)
        self._lock = threading.Lock()
        self.bad_lines = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="velocity-tracker", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, OSError):
                continue
            for line in data.decode("ascii", "replace").splitlines():
                try:
                    t, x, y, yaw = (float(v) for v in line.split())
                except ValueError:
                    self.bad_lines += 1
                    continue
                if not all(math.isfinite(v) for v in (t, x, y, yaw)):
                    self.bad_lines += 1
                    continue
                with self._lock:
                    if self._poses and t <= self._poses[-1][1]:
                        self.bad_lines += 1          # out of order or repeated: not a new pose
                        continue
                    self._poses = (self._poses + [(time.monotonic(), t, x, y, yaw)])[-(self.window + 1):]

    def velocity(self, state: P.State | None = None) -> Velocity | None:
        with self._lock:
            poses = list(self._poses)
        if len(poses) < 2 or time.monotonic() - poses[-1][0] > self.max_age_s:
            return None
        (_, t0, x0, y0, a0), (_, t1, x1, y1, a1) = poses[0], poses[-1]
        dt = t1 - t0
        vx, vy = to_heading(np.array([(x1 - x0) / dt, (y1 - y0) / dt]), a1)
        dyaw = math.remainder(a1 - a0, 2 * math.pi)
        return Velocity(vx, vy, dyaw / dt)

    def reset(self) -> None:
        pass                                    # poses carry the tracker's own time: nothing to forget

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self.sock.close()


def make_source(text: str, *, driver, spec, simulated: bool) -> VelocitySource:
    """`ground_truth` | `onboard` | `tracker:HOST:PORT`; ground truth only on a simulated robot."""
    kind, _, rest = text.partition(":")
    if kind == "ground_truth":
        if not simulated:
            raise VelocityError("--velocity ground_truth is privileged (the simulator's own state): this "
                                "robot is not simulated; use onboard or tracker:HOST:PORT")
        return GroundTruth(driver)
    if kind == "onboard":
        return Onboard(spec)
    if kind == "tracker" and rest:
        return Tracker(rest)
    raise VelocityError(f"--velocity {text!r}: one of ground_truth, onboard, tracker:HOST:PORT")
