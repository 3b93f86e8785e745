"""The ONE observation function, used by the simulator env AND by the runtime on hardware.

Only what a real robot measures goes in: joint encoders, the IMU (orientation as a gravity
vector in the body frame, and the gyro), the previous action, and the velocity command; and,
for a robot with a `gait:` clock, the clock's phase, counted in control steps since the start.
The layout (term order, sizes, scales, history) is data, written into every exported bundle so
the runtime can refuse a policy whose layout it would build differently.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

# Term order is fixed; sizes depend on the robot's joint count. "phase" only with a gait clock.
TERMS = ("gravity", "gyro", "joint_pos", "joint_vel", "last_action", "command", "phase")
COMMAND_SIZE = 2  # forward velocity m/s, yaw rate rad/s
PHASE_SIZE = 2    # sin, cos of the gait phase


@dataclass(frozen=True)
class RobotState:
    """One measurement of the robot, in the spec's joint order. Same type in sim and on hardware."""
    joint_pos: np.ndarray      # rad, (n,)
    joint_vel: np.ndarray      # rad/s, (n,)
    quat: np.ndarray           # IMU orientation, world-from-body, (w, x, y, z)
    gyro: np.ndarray           # rad/s, body frame, (3,)
    accel: np.ndarray = field(default_factory=lambda: np.zeros(3))  # m/s^2, body frame
    timestamp: float = 0.0     # s, the robot's own clock

    def is_finite(self) -> bool:
        return bool(all(np.all(np.isfinite(a)) for a in
                        (self.joint_pos, self.joint_vel, self.quat, self.gyro, self.accel))
                    and np.isfinite(self.timestamp))


@dataclass(frozen=True)
class ObsTerm:
    name: str
    size: int
    scale: float


@dataclass(frozen=True)
class ObservationLayout:
    terms: tuple[ObsTerm, ...]
    history: int = 1
    gait_period: float | None = None   # s per gait cycle, when the layout has a "phase" term

    @property
    def frame_size(self) -> int:
        return sum(t.size for t in self.terms)

    @property
    def size(self) -> int:
        return self.frame_size * self.history

    def to_dict(self) -> dict:
        return {"history": self.history,
                "terms": [{"name": t.name, "size": t.size, "scale": t.scale} for t in self.terms],
                "gait_period": self.gait_period}

    @classmethod
    def from_dict(cls, d: dict) -> "ObservationLayout":
        period = d.get("gait_period")
        return cls(tuple(ObsTerm(t["name"], int(t["size"]), float(t["scale"])) for t in d["terms"]),
                   int(d["history"]), None if period is None else float(period))


def layout_for(spec) -> ObservationLayout:
    """The observation layout a RobotSpec implies (scales default to 1)."""
    n = spec.n_joints
    sizes = {"gravity": 3, "gyro": 3, "joint_pos": n, "joint_vel": n, "last_action": n,
             "command": COMMAND_SIZE, "phase": PHASE_SIZE}
    scales = spec.observation.scales
    period = spec.gait.period if spec.gait is not None else None
    return ObservationLayout(tuple(ObsTerm(t, sizes[t], float(scales.get(t, 1.0))) for t in TERMS
                                   if t != "phase" or period is not None),
                             spec.observation.history, period)


def gait_phase(step: int, dt: float, period: float) -> float:
    """Phase in [0, 1) of a gait clock after `step` control steps of `dt` seconds."""
    return (step * dt / period) % 1.0


def gravity_in_body(quat: np.ndarray) -> np.ndarray:
    """Unit gravity direction expressed in the body frame: R(q)^T @ (0, 0, -1).

    For q = (w, x, y, z), the third row of R is (2(xz - wy), 2(yz + wx), 1 - 2(x^2 + y^2)),
    so R^T (0,0,-1) = -(that row).
    """
    w, x, y, z = (float(v) for v in quat)  # plain floats: this runs every control step
    n2 = w * w + x * x + y * y + z * z
    return -np.array([2 * (x * z - w * y), 2 * (y * z + w * x), n2 - 2 * (x * x + y * y)]) / n2


def observation_frame(state: RobotState, last_action: np.ndarray, command: np.ndarray,
                      default_pose: np.ndarray, layout: ObservationLayout,
                      phase: float = 0.0) -> np.ndarray:
    """One frame of the observation vector, in layout order, each term multiplied by its scale."""
    values = {
        "gravity": gravity_in_body(state.quat),
        "gyro": state.gyro,
        "joint_pos": state.joint_pos - default_pose,
        "joint_vel": state.joint_vel,
        "last_action": last_action,
        "command": command,
        "phase": (np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)),
    }
    return np.concatenate([np.asarray(values[t.name], dtype=np.float64) * t.scale
                           for t in layout.terms]).astype(np.float32)


class ObservationBuilder:
    """Stacks `history` frames (newest first) and counts calls for the gait clock (one call per
    control step of `dt` seconds). No other state, so sim and robot agree; reset at episode start
    in sim, and a runtime builds a fresh one per deployment."""

    def __init__(self, layout: ObservationLayout, default_pose: np.ndarray, dt: float):
        self.layout = layout
        self.default_pose = np.asarray(default_pose, dtype=np.float64)
        self.dt = dt
        self._frames: deque[np.ndarray] = deque(maxlen=layout.history)
        self._step = 0
        self.phase = 0.0   # gait phase of the latest observation (0 without a gait clock)

    def reset(self) -> None:
        self._frames.clear()
        self._step = 0
        self.phase = 0.0

    def __call__(self, state: RobotState, last_action: np.ndarray, command: np.ndarray) -> np.ndarray:
        if self.layout.gait_period is not None:
            self.phase = gait_phase(self._step, self.dt, self.layout.gait_period)
        self._step += 1
        frame = observation_frame(state, last_action, command, self.default_pose, self.layout,
                                  self.phase)
        if not self._frames:  # first frame fills the history so the size never changes
            self._frames.extend([frame] * self.layout.history)
        else:
            self._frames.appendleft(frame)
        return np.concatenate(list(self._frames)) if self.layout.history > 1 else frame


def builder_for(spec) -> ObservationBuilder:
    return ObservationBuilder(layout_for(spec), spec.default_pose, spec.control.period)
