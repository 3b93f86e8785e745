"""Simulator: one robot's MuJoCo model driven through the servo model.

Shared by LocomotionEnv (training) and the mock robot (deployment tests). It knows physics and
ground truth; it does not know rewards, noise, latency or the serial protocol.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from simreal.envs import servo as servo_model
from simreal.envs.arrays import sum_last
from simreal.envs.servo import ServoParams
from simreal.robot.observation import RobotState, heading_of


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


GT = "simreal_gt_"   # prefix of the ground-truth sensors added to every robot model
HOIST_M = 0.15       # m: how far hoist() lifts the base above its pose (feet clear of the ground)


def load_model(spec) -> mujoco.MjModel:
    """The robot's MJCF plus ground-truth sensors (base frame, foot contact and speed, drive
    torque), so everything a step reads is in `qpos`/`qvel`/`sensordata`: one MjData's arrays,
    or a batch of them stacked (simreal.envs.batched). Sensors do not change the dynamics."""
    S, O = mujoco.mjtSensor, mujoco.mjtObj
    ms = mujoco.MjSpec.from_file(str(spec.mjcf_path))
    for kind, name in ((S.mjSENS_FRAMEPOS, "base_pos"), (S.mjSENS_FRAMEXAXIS, "base_x"),
                       (S.mjSENS_FRAMEYAXIS, "base_y"), (S.mjSENS_FRAMEZAXIS, "base_z")):
        ms.add_sensor(name=GT + name, type=kind, objtype=O.mjOBJ_XBODY, objname=spec.base_body)
    for foot in spec.feet:
        # contact: intprm (data=found, reduce=none, num=1): how many contacts touch the foot geom
        ms.add_sensor(name=GT + "contact_" + foot, type=S.mjSENS_CONTACT, objtype=O.mjOBJ_GEOM,
                      objname=foot, intprm=[1, 0, 1])
        ms.add_sensor(name=GT + "vel_" + foot, type=S.mjSENS_FRAMELINVEL, objtype=O.mjOBJ_GEOM, objname=foot)
    for joint in spec.joint_names:
        ms.add_sensor(name=GT + "force_" + joint, type=S.mjSENS_ACTUATORFRC, objtype=O.mjOBJ_ACTUATOR,
                      objname=joint)
    return ms.compile()


@dataclass(frozen=True)
class Readout:
    """Where each quantity sits in qpos / qvel / sensordata, and how it is computed from them.

    Every method takes arrays with any leading batch shape: (nq,) for one MjData, (N, nq) for a
    batch. The single env and the batched env call these same functions.
    """
    qpos_idx: np.ndarray
    dof_idx: np.ndarray
    imu_quat: slice
    imu_gyro: slice
    imu_acc: slice
    base_pos: slice
    base_axes: tuple[slice, slice, slice]     # body x, y, z axes in world coordinates (xmat columns)
    foot_contact: np.ndarray                  # sensordata index per foot
    foot_vel: np.ndarray                      # (feet, 3) sensordata indices
    torque: np.ndarray

    @classmethod
    def of(cls, m: mujoco.MjModel, spec, qpos_idx: np.ndarray, dof_idx: np.ndarray) -> "Readout":
        def sl(name):
            i = m.sensor(name).id
            return slice(int(m.sensor_adr[i]), int(m.sensor_adr[i] + m.sensor_dim[i]))

        def adr(name):
            return int(m.sensor_adr[m.sensor(name).id])
        return cls(qpos_idx, dof_idx, sl("imu_quat"), sl("imu_gyro"), sl("imu_acc"), sl(GT + "base_pos"),
                   (sl(GT + "base_x"), sl(GT + "base_y"), sl(GT + "base_z")),
                   np.array([adr(GT + "contact_" + f) for f in spec.feet]),
                   np.array([[adr(GT + "vel_" + f) + k for k in range(3)] for f in spec.feet]),
                   np.array([adr(GT + "force_" + j) for j in spec.joint_names]))

    def lin_vel_body(self, qvel: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """R^T v: the base's world velocity projected on the body axes."""
        v = qvel[..., 0:3]
        return np.stack([sum_last(sd[..., a] * v) for a in self.base_axes], axis=-1)

    def tilt(self, sd: np.ndarray) -> np.ndarray:
        """Angle between the body z axis and world up, radians."""
        return np.arccos(np.minimum(np.maximum(sd[..., self.base_axes[2].start + 2], -1.0), 1.0))

    def foot_contacts(self, sd: np.ndarray) -> np.ndarray:
        return sd[..., self.foot_contact] > 0

    def foot_speeds_xy(self, sd: np.ndarray, which: np.ndarray) -> np.ndarray:
        """Horizontal speed (m/s) of the selected feet; 0 for the others."""
        vel = sd[..., self.foot_vel]
        return np.hypot(vel[..., 0], vel[..., 1]) * which

    def measure(self, qpos: np.ndarray, qvel: np.ndarray, sd: np.ndarray, time,
                encoder_offset: np.ndarray, encoder_resolution: float) -> RobotState:
        """What the robot's sensors report: offset + quantized encoders, IMU. No noise here."""
        res = encoder_resolution
        q = np.round((qpos[..., self.qpos_idx] + encoder_offset) / res) * res
        return RobotState(joint_pos=q, joint_vel=qvel[..., self.dof_idx], quat=sd[..., self.imu_quat],
                          gyro=sd[..., self.imu_gyro], accel=sd[..., self.imu_acc], timestamp=time)


def terrain_height(hfield: tuple | None, heights: np.ndarray, x, y):
    """Floor height at (x, y): nearest height-field sample (0 on a plane). `heights` is the
    field's samples, (nrow * ncol,) or (N, nrow * ncol) with x, y of shape (N,)."""
    if hfield is None:
        return np.zeros_like(np.asarray(x, dtype=float))
    nrow, ncol, rx, ry, hz = hfield
    # Row index runs along y, column along x (MuJoCo's height-field convention).
    c = np.minimum(np.maximum(np.rint((np.asarray(x) + rx) / (2 * rx) * (ncol - 1)), 0), ncol - 1).astype(int)
    r = np.minimum(np.maximum(np.rint((np.asarray(y) + ry) / (2 * ry) * (nrow - 1)), 0), nrow - 1).astype(int)
    if heights.ndim == 1:
        return heights[r * ncol + c] * hz
    rows = np.arange(heights.shape[0]) * heights.shape[1]      # row i's samples start here, flattened
    return heights.reshape(-1)[rows + r * ncol + c] * hz


class Simulator:
    def __init__(self, spec):
        self.spec = spec
        self.model = load_model(spec)
        self.data = mujoco.MjData(self.model)
        m = self.model
        ids = [m.joint(n).id for n in spec.joint_names]
        self.qpos_idx = np.array([m.jnt_qposadr[i] for i in ids])
        self.dof_idx = np.array([m.jnt_dofadr[i] for i in ids])
        self.act_idx = np.array([m.actuator(n).id for n in spec.joint_names])
        self.base_id = m.body(spec.base_body).id
        # Randomization moves the base's centre of mass (body_ipos). MuJoCo compiles a body whose
        # inertial frame coincides with its frame as body_sameframe != 0 and then never reads
        # body_ipos: a CoM offset would be silently ignored (issue 14). Clear the flag.
        m.body_sameframe[self.base_id] = 0
        self.foot_geoms = np.array([m.geom(f).id for f in spec.feet])
        self.foot_bodies = m.geom_bodyid[self.foot_geoms]
        self.floor_geom = m.geom("floor").id if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "floor") >= 0 else -1
        self.readout = Readout.of(m, spec, self.qpos_idx, self.dof_idx)
        self.nominal = Nominal(m.body_mass.copy(), m.body_inertia.copy(), m.body_ipos.copy(),
                               m.geom_friction.copy(), m.dof_damping.copy(),
                               m.dof_frictionloss.copy(), m.dof_armature.copy())
        self.servo = ServoParams.nominal(spec)
        self.joint_damping = m.dof_damping[self.dof_idx].copy()  # passive, without back-EMF
        self.encoder_offset = np.zeros(spec.n_joints)
        self.encoder_resolution = 2 * np.pi / spec.servo.ticks_per_rev
        self.gain_scale = 1.0
        self.held_base: np.ndarray | None = None     # hoist(): the base pose a stand holds
        self.configure_servos()
        self.substeps = spec.control.substeps
        self._spawn_height = float(m.body_pos[self.base_id][2])
        self.hfield = None          # (nrow, ncol, x half-size, y half-size, z scale) of the floor
        self._hfield_adr = 0
        if self.floor_geom >= 0 and m.geom_type[self.floor_geom] == mujoco.mjtGeom.mjGEOM_HFIELD:
            h = m.geom_dataid[self.floor_geom]
            self._hfield_adr = int(m.hfield_adr[h])
            self.hfield = (int(m.hfield_nrow[h]), int(m.hfield_ncol[h]), *map(float, m.hfield_size[h][:3]))

    def configure_servos(self, gain_scale: float | None = None) -> None:
        """Write servo params into the model; call after changing self.servo or joint_damping."""
        if gain_scale is not None:
            self.gain_scale = gain_scale
        servo_model.write_to_model(self.model, self.act_idx, self.dof_idx, self.servo,
                                   self.joint_damping, self.gain_scale)

    # --- state ------------------------------------------------------------------------------
    def reset(self, pose: np.ndarray | None = None, height: float | None = None,
              yaw: float = 0.0) -> None:
        """Spawn pose (default pose, upright, on the ground); releases a hoisted base."""
        self.held_base = None
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
        d = self.data
        return self.readout.measure(d.qpos, d.qvel.copy(), d.sensordata.copy(), self.time,
                                    self.encoder_offset, self.encoder_resolution)

    # --- ground truth (never shown to the policy) ---------------------------------------------
    def base_pos(self) -> np.ndarray:
        return self.data.xpos[self.base_id].copy()

    def heading(self) -> float:
        """Yaw of the base in the world frame (rad, -pi..pi): where the robot faces."""
        return float(heading_of(self.data.xquat[self.base_id]))

    def base_quat(self) -> np.ndarray:
        return self.data.xquat[self.base_id].copy()

    def base_lin_vel_world(self) -> np.ndarray:
        return self.data.qvel[0:3].copy()

    def base_lin_vel_body(self) -> np.ndarray:
        return self.readout.lin_vel_body(self.data.qvel, self.data.sensordata)

    def base_ang_vel_body(self) -> np.ndarray:
        return self.data.qvel[3:6].copy()  # free joint angular velocity is in the body frame

    def tilt(self) -> float:
        """Angle between the body z axis and world up, radians."""
        return float(self.readout.tilt(self.data.sensordata))

    def terrain_heights(self) -> np.ndarray:
        """The floor's height-field samples (empty on a plane)."""
        if self.hfield is None:
            return np.zeros(0)
        n = self.hfield[0] * self.hfield[1]
        return self.model.hfield_data[self._hfield_adr:self._hfield_adr + n]

    def terrain_height(self, x: float, y: float) -> float:
        """Floor height at (x, y): nearest height-field sample (0 on a plane)."""
        return float(terrain_height(self.hfield, self.terrain_heights(), x, y))

    def base_height(self) -> float:
        x, y, z = self.base_pos()
        return z - self.terrain_height(x, y)

    def foot_contacts(self) -> np.ndarray:
        """Which feet touch the floor (bool per foot)."""
        return self.readout.foot_contacts(self.data.sensordata)

    def foot_speeds_xy(self, which: np.ndarray) -> np.ndarray:
        """Horizontal speed (m/s) of the selected feet; 0 for the others (slip needs only contacts)."""
        return self.readout.foot_speeds_xy(self.data.sensordata, which)

    @property
    def last_torque(self) -> np.ndarray:
        """Servo drive torque of the last physics step (before back-EMF), N*m."""
        return self.data.sensordata[self.readout.torque]

    def hoist(self) -> None:
        """Hang the robot from a stand (system identification): from now on the base stays
        HOIST_M above where it is, upright as it is, and only the joints move."""
        self.data.qpos[2] += HOIST_M
        self.data.qvel[0:6] = 0.0
        mujoco.mj_forward(self.model, self.data)
        self.held_base = self.data.qpos[0:7].copy()

    def step(self, targets: np.ndarray, n_substeps: int | None = None) -> None:
        """Advance one control period (or n_substeps physics steps) holding the targets.

        The servo regulates its own (offset) encoder reading to the target, so the physical
        joint settles at target - offset: that is what a calibration error does on hardware.
        """
        self.data.ctrl[self.act_idx] = targets - self.encoder_offset
        n = self.substeps if n_substeps is None else n_substeps
        if self.held_base is None:
            mujoco.mj_step(self.model, self.data, n)
            return
        for _ in range(n):                  # hoisted: the stand holds the base after every physics step
            mujoco.mj_step(self.model, self.data, 1)
            self.data.qpos[0:7] = self.held_base
            self.data.qvel[0:6] = 0.0

    def push(self, dv_xy: np.ndarray) -> None:
        self.data.qvel[0:2] += dv_xy
