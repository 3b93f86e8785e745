"""Servo model of a hobby bus servo (STS3215 class), evaluated by MuJoCo itself.

A bus servo is a voltage-mode position controller driving a geared DC motor:

    tau = clip(kp * (target - q_enc) - kd * qd, -tau_s, tau_s)  -  (tau_s / v_max) * qd

The clipped PD term is the drive saturating at the supply voltage (stall torque tau_s); the
last term is the motor's back-EMF, which caps the joint at the no-load speed v_max when the
drive is saturated. MuJoCo represents this exactly: a `general` actuator with affine bias
(gain kp, bias [0, -kp, -kd], force range +-tau_s) plus joint damping tau_s / v_max. So a whole
control period is one `mj_step(..., nstep)` call in C: no Python per physics step. Training env
and mock robot share this model through `Simulator`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ServoParams:
    kp: np.ndarray               # N*m/rad
    kd: np.ndarray               # N*m*s/rad
    torque_limit: np.ndarray     # N*m (stall)
    velocity_limit: np.ndarray   # rad/s (no load)

    @classmethod
    def nominal(cls, spec) -> "ServoParams":
        n, s = spec.n_joints, spec.servo
        return cls(np.full(n, s.kp), np.full(n, s.kd), np.full(n, s.torque_limit),
                   np.full(n, s.velocity_limit))

    @property
    def back_emf_damping(self) -> np.ndarray:
        return self.torque_limit / self.velocity_limit


def write_to_model(model, act_idx: np.ndarray, dof_idx: np.ndarray, p: ServoParams,
                   joint_damping: np.ndarray, gain_scale: float = 1.0) -> None:
    """Program the actuators and joint damping; gain_scale < 1 is the soft (low-gain) mode."""
    kp, kd = gain_scale * p.kp, gain_scale * p.kd
    model.actuator_gainprm[act_idx, 0] = kp
    model.actuator_biasprm[act_idx, 0] = 0.0
    model.actuator_biasprm[act_idx, 1] = -kp
    model.actuator_biasprm[act_idx, 2] = -kd
    model.actuator_forcerange[act_idx, 0] = -p.torque_limit
    model.actuator_forcerange[act_idx, 1] = p.torque_limit
    model.dof_damping[dof_idx] = joint_damping + p.back_emf_damping
