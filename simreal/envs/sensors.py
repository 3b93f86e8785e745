"""Sensor model on top of the simulator's exact measurement: noise per term and gyro bias.

One copy, used by the training env and by the mock robot, so a policy meets on the mock the
same sensor imperfections it was trained with.
"""
from __future__ import annotations

import numpy as np

from simreal.robot.observation import RobotState
from simreal.robot.spec import NoiseSpec


def perturb_quat(quat: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
    """quat * exp(rotvec / 2): a small body-frame rotation, for IMU orientation noise."""
    rx, ry, rz = (float(v) for v in rotvec)
    angle = (rx * rx + ry * ry + rz * rz) ** 0.5
    if angle < 1e-12:
        return quat
    c, k = np.cos(angle / 2), np.sin(angle / 2) / angle
    x2, y2, z2 = k * rx, k * ry, k * rz
    w1, x1, y1, z1 = (float(v) for v in quat)
    return np.array([w1 * c - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * c + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * c + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * c])


def add_noise(state: RobotState, noise: NoiseSpec, imu_bias: np.ndarray,
              rng: np.random.Generator) -> RobotState:
    """Gaussian noise on encoders and IMU (orientation as a random small rotation), plus gyro bias."""
    n = len(state.joint_pos)
    return RobotState(
        joint_pos=state.joint_pos + rng.normal(0.0, noise.joint_pos, n) if noise.joint_pos else state.joint_pos,
        joint_vel=state.joint_vel + rng.normal(0.0, noise.joint_vel, n) if noise.joint_vel else state.joint_vel,
        quat=perturb_quat(state.quat, rng.normal(0.0, noise.gravity, 3)) if noise.gravity else state.quat,
        gyro=state.gyro + imu_bias + (rng.normal(0.0, noise.gyro, 3) if noise.gyro else 0.0),
        accel=state.accel, timestamp=state.timestamp)
