"""Simulator: one robot's MuJoCo model driven through the servo model.

Shared by LocomotionEnv (training) and the mock robot (deployment tests). It knows physics and
ground truth; it does not know rewards, noise, latency or the serial protocol.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from simreal.envs import servo as servo_model
from simreal.envs.servo import ServoParams
from simreal.robot.observation import RobotState


@dataclass(frozen=True)
class Nominal:
    """The model's parameters as loaded, so randomization always scales from the same base."""
    body_mass: np.ndarray
    body_inertia: np.ndarray
    body_ipos: np.ndarray
    geom_friction: np.ndarray
    dof_damping: np.ndarray
    dof_frictionloss: np.ndarray
    dof_armature: np.ndarray


class Simulator:
    def __init__(self, spec):
        self.spec = spec
        self.model = mujoco.MjModel.from_xml_path(str(spec.mjcf_path))
        self.data = mujoco.MjData(self.model)
        m = self.model
        ids = [m.joint(n).id for n in spec.joint_names]
        self.qpos_idx = np.array([m.jnt_qposadr[i] for i in ids])
        self.dof_idx = np.array([m.jnt_dofadr[i] for i in ids])
        self.act_idx = np.array([m.actuator(n).id for n in spec.joint_names])
        self.base_id = m.body(spec.base_body).id
        self.foot_geoms = np.array([m.geom(f).id for f in spec.feet])
        self.foot_bodies = m.geom_bodyid[self.foot_geoms]
        self.floor_geom = m.geom("floor").id if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "floor") >= 0 else -1
        self._sensor = {name: slice(m.sensor_adr[m.sensor(name).id],
                                    m.sensor_adr[m.sensor(name).id] + m.sensor_dim[m.sensor(name).id])
                        for name in ("imu_quat", "imu_gyro", "imu_acc")}
        self.nominal = Nominal(m.body_mass.copy(), m.body_inertia.copy(), m.body_ipos.copy(),
                               m.geom_friction.copy(), m.dof_damping.copy(),
                               m.dof_frictionloss.copy(), m.dof_armature.copy())
        self.servo = ServoParams.nominal(spec)
        self.joint_damping = m.dof_damping[self.dof_idx].copy()  # passive, without back-EMF
        self.encoder_offset = np.zeros(spec.n_joints)
        self.encoder_resolution = 2 * np.pi / spec.servo.ticks_per_rev
        self.gain_scale = 1.0
        self.configure_servos()
        self.substeps = spec.control.substeps
        self._spawn_height = float(m.body_pos[self.base_id][2])
        self._hfield = None
        if self.floor_geom >= 0 and m.geom_type[self.floor_geom] == mujoco.mjtGeom.mjGEOM_HFIELD:
            h = m.geom_dataid[self.floor_geom]
            self._hfield = (int(m.hfield_adr[h]), int(m.hfield_nrow[h]), int(m.hfield_ncol[h]),
                            *map(float, m.hfield_size[h][:3]))

    def configure_servos(self, gain_scale: float | None = None) -> None:
        """Write servo params into the model; call after changing self.servo or joint_damping."""
        if gain_scale is not None:
            self.gain_scale = gain_scale
        servo_model.write_to_model(self.model, self.act_idx, self.dof_idx, self.servo,
                                   self.joint_damping, self.gain_scale)

    # --- state ------------------------------------------------------------------------------
    def reset(self, pose: np.ndarray | None = None, height: float | None = None,
              yaw: float = 0.0) -> None:
        d = self.data
        mujoco.mj_resetData(self.model, d)
        d.qpos[0:3] = [0.0, 0.0, self._spawn_height if height is None else height]
        d.qpos[3:7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        d.qpos[self.qpos_idx] = self.spec.default_pose if pose is None else pose
        d.ctrl[self.act_idx] = d.qpos[self.qpos_idx] + self.encoder_offset
        mujoco.mj_forward(self.model, d)

    @property
    def time(self) -> float:
        return float(self.data.time)

    def joint_pos(self) -> np.ndarray:
        return self.data.qpos[self.qpos_idx].copy()

    def joint_vel(self) -> np.ndarray:
        return self.data.qvel[self.dof_idx].copy()

    def measure(self) -> RobotState:
        """What the robot's sensors report: offset + quantized encoders, IMU. No noise here."""
        d, s, res = self.data, self._sensor, self.encoder_resolution
        q = np.round((self.joint_pos() + self.encoder_offset) / res) * res
        return RobotState(joint_pos=q, joint_vel=self.joint_vel(), quat=d.sensordata[s["imu_quat"]].copy(),
                          gyro=d.sensordata[s["imu_gyro"]].copy(), accel=d.sensordata[s["imu_acc"]].copy(),
                          timestamp=self.time)

    # --- ground truth (never shown to the policy) ---------------------------------------------
    def base_pos(self) -> np.ndarray:
        return self.data.xpos[self.base_id].copy()

    def base_quat(self) -> np.ndarray:
        return self.data.xquat[self.base_id].copy()

    def base_lin_vel_world(self) -> np.ndarray:
        return self.data.qvel[0:3].copy()

    def base_lin_vel_body(self) -> np.ndarray:
        rot = self.data.xmat[self.base_id].reshape(3, 3)
        return rot.T @ self.data.qvel[0:3]

    def base_ang_vel_body(self) -> np.ndarray:
        return self.data.qvel[3:6].copy()  # free joint angular velocity is in the body frame

    def tilt(self) -> float:
        """Angle between the body z axis and world up, radians."""
        return float(np.arccos(np.clip(self.data.xmat[self.base_id][8], -1.0, 1.0)))

    def terrain_height(self, x: float, y: float) -> float:
        """Floor height at (x, y): nearest height-field sample (0 on a plane)."""
        if self._hfield is None:
            return 0.0
        adr, nrow, ncol, rx, ry, hz = self._hfield
        # Row index runs along y, column along x (MuJoCo's height-field convention).
        c = min(max(int(round((x + rx) / (2 * rx) * (ncol - 1))), 0), ncol - 1)
        r = min(max(int(round((y + ry) / (2 * ry) * (nrow - 1))), 0), nrow - 1)
        return float(self.model.hfield_data[adr + r * ncol + c] * hz)

    def base_height(self) -> float:
        x, y, z = self.base_pos()
        return z - self.terrain_height(x, y)

    def foot_contacts(self) -> np.ndarray:
        """Which feet touch the floor (bool per foot)."""
        con = self.data.contact
        touching = set(con.geom1.tolist()) | set(con.geom2.tolist())
        return np.array([g in touching for g in self.foot_geoms.tolist()])

    def foot_speeds_xy(self, which: np.ndarray) -> np.ndarray:
        """Horizontal speed (m/s) of the selected feet; 0 for the others (slip needs only contacts)."""
        out = np.zeros(len(self.foot_geoms))
        vel = np.zeros(6)
        for k in np.flatnonzero(which):
            mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_GEOM,
                                     int(self.foot_geoms[k]), vel, 0)
            out[k] = np.hypot(vel[3], vel[4])
        return out

    @property
    def last_torque(self) -> np.ndarray:
        """Servo drive torque of the last physics step (before back-EMF), N*m."""
        return self.data.actuator_force[self.act_idx]

    def step(self, targets: np.ndarray, n_substeps: int | None = None) -> None:
        """Advance one control period (or n_substeps physics steps) holding the targets.

        The servo regulates its own (offset) encoder reading to the target, so the physical
        joint settles at target - offset: that is what a calibration error does on hardware.
        """
        self.data.ctrl[self.act_idx] = targets - self.encoder_offset
        mujoco.mj_step(self.model, self.data, self.substeps if n_substeps is None else n_substeps)

    def push(self, dv_xy: np.ndarray) -> None:
        self.data.qvel[0:2] += dv_xy
