"""Sensor model on top of the simulator's exact measurement: noise per term and gyro bias.

One copy, used by the training env, the batched env and the mock robot, so a policy meets on the
mock the same sensor imperfections it was trained with. The functions take arrays with any
leading batch shape; the noise is given as standard normal draws `z` (`draws(n)` per
measurement) so a batch can draw its noise in blocks and match the single env draw for draw.
"""
from __future__ import annotations

import numpy as np

from simreal.robot.observation import RobotState
from simreal.robot.spec import NoiseSpec


def draws(n_joints: int) -> int:
    """Standard normals one noisy measurement uses: encoder position and velocity, IMU tilt, gyro."""
    return 2 * n_joints + 6


def stds(noise: NoiseSpec) -> np.ndarray:
    """(joint_pos, joint_vel, gravity, gyro) standard deviations, in that order."""
    return np.array([noise.joint_pos, noise.joint_vel, noise.gravity, noise.gyro])


def perturb_quat(quat: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
    """quat * exp(rotvec / 2): a small body-frame rotation, for IMU orientation noise."""
    rx, ry, rz = rotvec[..., 0], rotvec[..., 1], rotvec[..., 2]
    angle = np.sqrt(rx * rx + ry * ry + rz * rz)
    c = np.cos(angle / 2)
    k = np.where(angle < 1e-12, 0.0, np.sin(angle / 2) / np.where(angle < 1e-12, 1.0, angle))
    x2, y2, z2 = k * rx, k * ry, k * rz
    w1, x1, y1, z1 = quat[..., 0], quat[..., 1], quat[..., 2], quat[..., 3]
    out = np.stack([w1 * c - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * c + y1 * z2 - z1 * y2,
                    w1 * y2 - x1 * z2 + y1 * c + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * c], axis=-1)
    return np.where((angle < 1e-12)[..., None], quat, out)


def apply_noise(state: RobotState, std: np.ndarray, imu_bias: np.ndarray, z: np.ndarray) -> RobotState:
    """Gaussian noise (std from `stds`, z standard normals) on encoders and IMU (orientation as a
    random small rotation), plus gyro bias."""
    n = state.joint_pos.shape[-1]
    s = [std[..., k:k + 1] for k in range(4)]
    return RobotState(joint_pos=state.joint_pos + s[0] * z[..., :n],
                      joint_vel=state.joint_vel + s[1] * z[..., n:2 * n],
                      quat=perturb_quat(state.quat, s[2] * z[..., 2 * n:2 * n + 3]),
                      gyro=state.gyro + imu_bias + s[3] * z[..., 2 * n + 3:2 * n + 6],
                      accel=state.accel, timestamp=state.timestamp)


def add_noise(state: RobotState, noise: NoiseSpec, imu_bias: np.ndarray,
              rng: np.random.Generator) -> RobotState:
    """One measurement's noise drawn from `rng` (the mock robot's use)."""
    return apply_noise(state, stds(noise), imu_bias, rng.standard_normal(draws(len(state.joint_pos))))
