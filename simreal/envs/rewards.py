"""Reward as a named sum of terms: reward = sum_k scale_k * term_k.

Each term is a plain function of the simulator's ground truth and the commanded velocity, so
the per-term values can be logged and shown to sum to the reward (tested).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRACKING_SIGMA = 0.1   # (m/s)^2: exp(-err^2 / sigma), wide enough to pull a standing robot forward
YAW_SIGMA = 0.2        # (rad/s)^2
AIR_TIME_TARGET = 0.2  # s: swing phases longer than this earn reward at touchdown, shorter ones cost
MOVING = 0.05          # m/s: below this command the gait terms are off (standing still is allowed)


@dataclass(frozen=True)
class StepQuantities:
    """Everything the reward looks at, gathered once per control step."""
    lin_vel_body: np.ndarray   # m/s (3,)
    ang_vel_body: np.ndarray   # rad/s (3,)
    up_z: float                # cos(tilt): body z axis dotted with world up
    torque: np.ndarray         # N*m per joint
    action: np.ndarray
    last_action: np.ndarray
    foot_contact: np.ndarray   # bool per foot
    foot_speed: np.ndarray     # m/s horizontal speed of each foot touching the ground
    command: np.ndarray        # (vx, yaw rate)
    foot_touchdown: np.ndarray  # bool per foot: first contact after a swing, this step
    foot_air_time: np.ndarray   # s each foot spent in the air before touching down now (0 otherwise)
    posture_error: np.ndarray   # rad: task.posture_joints minus their default pose
    fell: bool                  # this step ends the episode by a fall


TERMS = {
    "tracking_lin_vel": lambda q: np.exp(-((q.lin_vel_body[0] - q.command[0]) ** 2 + q.lin_vel_body[1] ** 2)
                                         / TRACKING_SIGMA),
    "tracking_yaw": lambda q: np.exp(-(q.ang_vel_body[2] - q.command[1]) ** 2 / YAW_SIGMA),
    "upright": lambda q: q.up_z,
    "lin_vel_z": lambda q: q.lin_vel_body[2] ** 2,
    "torque": lambda q: float(q.torque @ q.torque),
    "action_rate": lambda q: float((q.action - q.last_action) @ (q.action - q.last_action)),
    "foot_slip": lambda q: float(q.foot_contact @ (q.foot_speed * q.foot_speed)),
    "alive": lambda q: 1.0,
    "termination": lambda q: float(q.fell),   # one-off cost of a fall, beyond the lost future reward
    # Gait terms (legged_gym's feet_air_time and no_fly): without them a biped learns to shuffle
    # or to stand; with them it must lift a foot for AIR_TIME_TARGET and land it to be paid.
    "feet_air_time": lambda q: float(q.foot_touchdown @ (q.foot_air_time - AIR_TIME_TARGET))
                               * float(abs(q.command[0]) > MOVING),
    "posture": lambda q: float(q.posture_error @ q.posture_error),
    "single_support": lambda q: float(int(q.foot_contact.sum()) == 1) * float(abs(q.command[0]) > MOVING),
}


def check_scales(scales: dict[str, float]) -> None:
    unknown = set(scales) - set(TERMS)
    if unknown:
        raise ValueError(f"task.reward_scales: unknown reward terms {sorted(unknown)}; "
                         f"known: {sorted(TERMS)}")


def compute(q: StepQuantities, scales: dict[str, float]) -> tuple[float, dict[str, float]]:
    """Returns (reward, {term: scaled value}); terms with no scale are not computed."""
    terms = {name: float(scale * TERMS[name](q)) for name, scale in scales.items()}
    return float(sum(terms.values())), terms
