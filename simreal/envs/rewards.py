"""Reward as a named sum of terms: reward = sum_k scale_k * term_k.

Each term is a plain function of the simulator's ground truth and the commanded velocity, so
the per-term values can be logged and shown to sum to the reward (tested).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simreal.envs.arrays import sum_last

TRACKING_SIGMA = 0.1   # (m/s)^2: exp(-err^2 / sigma), wide enough to pull a standing robot forward
YAW_SIGMA = 0.2        # (rad/s)^2
AIR_TIME_TARGET = 0.2  # s: swing phases longer than this earn reward at touchdown, shorter ones cost
MOVING = 0.05          # m/s: below this command the gait terms are off (standing still is allowed)


@dataclass(frozen=True)
class StepQuantities:
    """Everything the reward looks at, gathered once per control step (batched: every field
    gains a leading (N,) axis)."""
    lin_vel_body: np.ndarray   # m/s (3,)
    ang_vel_body: np.ndarray   # rad/s (3,)
    up_z: float                # cos(tilt): body z axis dotted with world up (arrays: one per env)
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


def _moving(q) -> np.ndarray:
    return (np.abs(q.command[..., 0]) > MOVING).astype(float)


# Each term works on one step (vectors) or on a batch (a leading (N,) axis on every field).
TERMS = {
    "tracking_lin_vel": lambda q: np.exp(-((q.lin_vel_body[..., 0] - q.command[..., 0]) ** 2
                                           + q.lin_vel_body[..., 1] ** 2) / TRACKING_SIGMA),
    "tracking_yaw": lambda q: np.exp(-(q.ang_vel_body[..., 2] - q.command[..., 1]) ** 2 / YAW_SIGMA),
    "upright": lambda q: q.up_z,
    "lin_vel_z": lambda q: q.lin_vel_body[..., 2] ** 2,
    "torque": lambda q: sum_last(q.torque * q.torque),
    "action_rate": lambda q: sum_last((q.action - q.last_action) ** 2),
    "foot_slip": lambda q: sum_last(q.foot_contact * (q.foot_speed * q.foot_speed)),
    "alive": lambda q: np.ones_like(q.up_z),
    "termination": lambda q: np.asarray(q.fell, dtype=float),   # one-off cost of a fall, beyond the lost future reward
    # Gait terms (legged_gym's feet_air_time and no_fly): without them a biped learns to shuffle
    # or to stand; with them it must lift a foot for AIR_TIME_TARGET and land it to be paid.
    "feet_air_time": lambda q: sum_last(q.foot_touchdown * (q.foot_air_time - AIR_TIME_TARGET)) * _moving(q),
    "posture": lambda q: sum_last(q.posture_error * q.posture_error),
    "single_support": lambda q: (sum_last(q.foot_contact) == 1) * _moving(q),
}


def check_scales(scales: dict[str, float]) -> None:
    unknown = set(scales) - set(TERMS)
    if unknown:
        raise ValueError(f"task.reward_scales: unknown reward terms {sorted(unknown)}; "
                         f"known: {sorted(TERMS)}")


def compute_batch(q: StepQuantities, scales: dict[str, float]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(reward, {term: scaled value}) as arrays over the batch; terms with no scale are not computed."""
    terms = {name: scale * np.asarray(TERMS[name](q), dtype=np.float64) for name, scale in scales.items()}
    reward = np.zeros_like(np.asarray(q.up_z, dtype=np.float64))
    for value in terms.values():          # in scale order, as the single step sums them
        reward = reward + value
    return reward, terms


def compute(q: StepQuantities, scales: dict[str, float]) -> tuple[float, dict[str, float]]:
    """One step: (reward, {term: scaled value}) as floats."""
    reward, terms = compute_batch(q, scales)
    return float(reward), {name: float(v) for name, v in terms.items()}
