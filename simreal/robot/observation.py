"""The ONE observation function, used by the simulator env AND by the runtime on hardware.

Only what a real robot measures goes in: joint encoders, the IMU (orientation as a gravity
vector in the body frame, and the gyro), the previous action, and the velocity command.
The layout (term order, sizes, scales, history) is data, written into every exported bundle so
the runtime can refuse a policy whose layout it would build differently.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

# Term order is fixed; sizes depend on the robot's joint count.
TERMS = ("gravity", "gyro", "joint_pos", "joint_vel", "last_action", "command")
COMMAND_SIZE = 2  # forward velocity m/s, yaw rate rad/s


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

    @property
    def frame_size(self) -> int:
        return sum(t.size for t in self.terms)

    @property
    def size(self) -> int:
        return self.frame_size * self.history

    def entry_names(self) -> list[str]:
        """A name per observation entry, e.g. "joint_pos[3]" (newest frame) or "t-1.gyro[0]"."""
        frame = [f"{t.name}[{i}]" for t in self.terms for i in range(t.size)]
        return [n if h == 0 else f"t-{h}.{n}" for h in range(self.history) for n in frame]

    def to_dict(self) -> dict:
        return {"history": self.history,
                "terms": [{"name": t.name, "size": t.size, "scale": t.scale} for t in self.terms]}

    @classmethod
    def from_dict(cls, d: dict) -> "ObservationLayout":
        return cls(tuple(ObsTerm(t["name"], int(t["size"]), float(t["scale"])) for t in d["terms"]),
                   int(d["history"]))


def layout_for(spec) -> ObservationLayout:
    """The observation layout a RobotSpec implies (scales default to 1)."""
    n = spec.n_joints
    sizes = {"gravity": 3, "gyro": 3, "joint_pos": n, "joint_vel": n, "last_action": n,
             "command": COMMAND_SIZE}
    scales = spec.observation.scales
    return ObservationLayout(tuple(ObsTerm(t, sizes[t], float(scales.get(t, 1.0))) for t in TERMS),
                             spec.observation.history)


def gravity_in_body(quat: np.ndarray) -> np.ndarray:
    """Unit gravity direction expressed in the body frame: R(q)^T @ (0, 0, -1).

    For q = (w, x, y, z), the third row of R is (2(xz - wy), 2(yz + wx), 1 - 2(x^2 + y^2)),
    so R^T (0,0,-1) = -(that row). Any leading batch shape: (4,) or (N, 4).
    """
    quat = np.asarray(quat, dtype=np.float64)
    w, x, y, z = quat[..., 0], quat[..., 1], quat[..., 2], quat[..., 3]
    n2 = w * w + x * x + y * y + z * z
    return -np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), n2 - 2 * (x * x + y * y)], axis=-1) / n2[..., None]


def heading_of(quat: np.ndarray) -> np.ndarray:
    """Yaw (rad, -pi..pi) of the body's forward axis in the world: where the robot faces.

    The same formula serves the simulator's true orientation and the robot's IMU quaternion,
    so a gap between them is the robot's, not ours. Any leading batch shape: (4,) or (N, 4).
    """
    quat = np.asarray(quat, dtype=np.float64)
    w, x, y, z = quat[..., 0], quat[..., 1], quat[..., 2], quat[..., 3]
    return np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def observation_frame(state: RobotState, last_action: np.ndarray, command: np.ndarray,
                      default_pose: np.ndarray, layout: ObservationLayout) -> np.ndarray:
    """One frame of the observation vector, in layout order, each term multiplied by its scale.
    Works on one state or on a batch (every field with a leading (N,) axis)."""
    values = {
        "gravity": gravity_in_body(state.quat),
        "gyro": state.gyro,
        "joint_pos": state.joint_pos - default_pose,
        "joint_vel": state.joint_vel,
        "last_action": last_action,
        "command": command,
    }
    return np.concatenate([np.asarray(values[t.name], dtype=np.float64) * t.scale
                           for t in layout.terms], axis=-1).astype(np.float32)


class ObservationBuilder:
    """Stacks `history` frames (newest first). Holds no other state, so sim and robot agree."""

    def __init__(self, layout: ObservationLayout, default_pose: np.ndarray):
        self.layout = layout
        self.default_pose = np.asarray(default_pose, dtype=np.float64)
        self._frames: deque[np.ndarray] = deque(maxlen=layout.history)

    def reset(self) -> None:
        self._frames.clear()

    def __call__(self, state: RobotState, last_action: np.ndarray, command: np.ndarray) -> np.ndarray:
        frame = observation_frame(state, last_action, command, self.default_pose, self.layout)
        if not self._frames:  # first frame fills the history so the size never changes
            self._frames.extend([frame] * self.layout.history)
        else:
            self._frames.appendleft(frame)
        return np.concatenate(list(self._frames)) if self.layout.history > 1 else frame


class BatchObservationHistory:
    """ObservationBuilder's history for N environments at once: (N, history, frame), newest
    first; a row's first frame after a reset fills its whole history."""

    def __init__(self, layout: ObservationLayout, n: int):
        self.layout = layout
        self.frames = np.zeros((n, layout.history, layout.frame_size), dtype=np.float32)

    def push(self, rows: np.ndarray, frames: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        """Add one frame for each of `rows` (`fresh`: a reset row); returns their observations."""
        h = self.frames
        old = h[rows, :-1]
        h[rows, 1:] = np.where(fresh[:, None, None], frames[:, None, :], old)
        h[rows, 0] = frames
        return h[rows].reshape(len(rows), -1)


def builder_for(spec) -> ObservationBuilder:
    return ObservationBuilder(layout_for(spec), spec.default_pose)
