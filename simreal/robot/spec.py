"""RobotSpec: robot.yaml validated against its schema and its MJCF.

Everything downstream (env, randomization, export contract, deploy safety limits) reads the
robot from here, so a mistake in robot.yaml is caught once, at load, with the file and field.
"""
from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simreal.errors import UserError
from simreal.robot.registry import robot_dir
from simreal.validation import describe_validation_error
from simreal.yamlfiles import read_mapping


class RobotSpecError(UserError, ValueError):
    """robot.yaml or its MJCF is wrong; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Range = tuple[float, float]


def _ordered(v: Range, what: str = "range") -> Range:
    if v[0] > v[1]:
        raise ValueError(f"{what} min {v[0]} > max {v[1]}")
    return v


class JointSpec(_Strict):
    name: str
    servo_id: int = Field(ge=0, le=253)
    min: float
    max: float
    default: float

    @model_validator(mode="after")
    def _limits(self) -> "JointSpec":
        if self.min > self.max:
            raise ValueError(f"joint {self.name}: min {self.min} > max {self.max}")
        if not self.min <= self.default <= self.max:
            raise ValueError(f"joint {self.name}: default {self.default} outside [{self.min}, {self.max}]")
        return self


class ServoSpec(_Strict):
    model: str
    kp: float = Field(gt=0)
    kd: float = Field(ge=0)
    torque_limit: float = Field(gt=0)
    velocity_limit: float = Field(gt=0)
    ticks_per_rev: int = Field(gt=0)


class ControlSpec(_Strict):
    period: float = Field(gt=0)
    physics_dt: float = Field(gt=0)
    action_scale: float = Field(gt=0)
    max_target_rate: float = Field(gt=0)

    @model_validator(mode="after")
    def _divides(self) -> "ControlSpec":
        n = self.period / self.physics_dt
        if abs(n - round(n)) > 1e-6 or round(n) < 1:
            raise ValueError(f"physics_dt {self.physics_dt} must divide period {self.period}")
        return self

    @property
    def substeps(self) -> int:
        return int(round(self.period / self.physics_dt))


class TaskSpec(_Strict):
    command_vx: Range
    command_yaw: Range = (0.0, 0.0)
    episode_seconds: float = Field(gt=0)
    max_tilt_deg: float = Field(gt=0, le=180)
    min_base_height: float = Field(ge=0)
    reward_scales: dict[str, float]
    posture_joints: list[str] = []   # joints the `posture` reward term keeps near their default

    _r1 = field_validator("command_vx", "command_yaw")(lambda v: _ordered(v))


class ObservationSpec(_Strict):
    history: int = Field(default=1, ge=1)
    scales: dict[str, float] = {}


class SerialSpec(_Strict):
    port: str = "/dev/ttyUSB0"
    baudrate: int = Field(default=1_000_000, gt=0)
    timeout: float = Field(default=0.008, gt=0)        # s per transaction, retries included
    reply_time: float = Field(default=0.001, gt=0)     # s: the firmware's worst turnaround

    def attempt_timeout(self, n_joints: int) -> float:
        """One attempt's reply timeout: both frames' wire time at the baud rate + reply_time + the
        host's margin (simreal.protocol.reply_timeout_s), within the transaction's `timeout`; what
        is left of `timeout` after a failed attempt goes to a retry."""
        from simreal import protocol

        return min(protocol.reply_timeout_s(n_joints, self.baudrate, self.reply_time), self.timeout)


class NoiseSpec(_Strict):
    joint_pos: float = Field(default=0.0, ge=0)
    joint_vel: float = Field(default=0.0, ge=0)
    gyro: float = Field(default=0.0, ge=0)
    gravity: float = Field(default=0.0, ge=0)


class RandomizationSpec(_Strict):
    """Ranges are [lo, hi] sampled uniformly; scalars are symmetric +- bounds."""
    friction: Range = (1.0, 1.0)
    mass_scale: Range = (1.0, 1.0)
    torso_added_mass: Range = (0.0, 0.0)
    com_offset: float = Field(default=0.0, ge=0)
    kp_scale: Range = (1.0, 1.0)
    kd_scale: Range = (1.0, 1.0)
    torque_scale: Range = (1.0, 1.0)
    velocity_limit_scale: Range = (1.0, 1.0)
    damping_scale: Range = (1.0, 1.0)
    frictionloss_scale: Range = (1.0, 1.0)
    armature_scale: Range = (1.0, 1.0)
    joint_offset: float = Field(default=0.0, ge=0)
    action_latency_steps: tuple[int, int] = (0, 0)
    imu_latency_steps: tuple[int, int] = (0, 0)
    noise: NoiseSpec = NoiseSpec()
    imu_bias: float = Field(default=0.0, ge=0)
    push_velocity: float = Field(default=0.0, ge=0)
    push_interval_s: Range = (5.0, 10.0)
    terrain_height: Range = (0.0, 0.0)

    @model_validator(mode="after")
    def _ranges(self) -> "RandomizationSpec":
        for name, v in self:
            if isinstance(v, tuple):
                _ordered(v, name)
        return self


class RobotSpec(_Strict):
    name: str
    description: str = ""
    mjcf: str
    base_body: str
    imu_site: str
    feet: list[str]
    joints: list[JointSpec] = Field(min_length=1)
    servo: ServoSpec
    control: ControlSpec
    task: TaskSpec
    observation: ObservationSpec = ObservationSpec()
    serial: SerialSpec = SerialSpec()
    randomization: RandomizationSpec = RandomizationSpec()
    # Filled in by load_robot, not by the YAML author.
    root: Optional[Path] = Field(default=None, exclude=True)

    @field_validator("joints")
    @classmethod
    def _unique(cls, joints: list[JointSpec]) -> list[JointSpec]:
        for attr in ("name", "servo_id"):
            seen = [getattr(j, attr) for j in joints]
            dup = {x for x in seen if seen.count(x) > 1}
            if dup:
                raise ValueError(f"duplicate joint {attr}: {sorted(dup)}")
        return joints

    @model_validator(mode="after")
    def _posture_joints_exist(self) -> "RobotSpec":
        unknown = [j for j in self.task.posture_joints if j not in self.joint_names]
        if unknown:
            raise ValueError(f"task.posture_joints: {unknown} are not joints of this robot "
                             f"(joints: {', '.join(self.joint_names)})")
        return self

    # --- derived, read-only views used on hot paths -----------------------------------------
    @property
    def joint_names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def n_joints(self) -> int:
        return len(self.joints)

    @cached_property
    def default_pose(self) -> np.ndarray:
        return np.array([j.default for j in self.joints])

    @cached_property
    def posture_mask(self) -> np.ndarray:
        return np.array([j.name in self.task.posture_joints for j in self.joints])

    @cached_property
    def joint_min(self) -> np.ndarray:
        return np.array([j.min for j in self.joints])

    @cached_property
    def joint_max(self) -> np.ndarray:
        return np.array([j.max for j in self.joints])

    @property
    def mjcf_path(self) -> Path:
        assert self.root is not None
        return self.root / self.mjcf

    @cached_property
    def spec_hash(self) -> str:
        """sha256 over robot.yaml and every MJCF file: what a bundle was trained on."""
        h = hashlib.sha256()
        assert self.root is not None
        for f in sorted([self.root / "robot.yaml", *self.root.glob("*.xml")]):
            h.update(f.name.encode())
            h.update(f.read_bytes())
        return h.hexdigest()


def parse_robot_yaml(path: Path) -> RobotSpec:
    """Schema checks only (no MJCF): unknown keys, types, ranges, min > max."""
    raw = read_mapping(path, RobotSpecError)
    try:
        return RobotSpec.model_validate({**raw, "root": path.parent})
    except ValidationError as e:
        raise RobotSpecError(describe_validation_error(str(path), e, "invalid robot description")) from None


def check_against_mjcf(spec: RobotSpec) -> None:
    """The MJCF and robot.yaml must name the same hinge joints, feet, base and IMU."""
    import mujoco

    path = spec.mjcf_path
    yaml_path = spec.root / "robot.yaml" if spec.root else "robot.yaml"
    if not path.is_file():
        raise RobotSpecError(f"{yaml_path}: field mjcf: file {path} does not exist")
    try:
        model = mujoco.MjModel.from_xml_path(str(path))
    except ValueError as e:
        raise RobotSpecError(f"{path}: MuJoCo cannot load this MJCF: {e}") from None
    obj = mujoco.mjtObj
    hinges = {model.joint(i).name for i in range(model.njnt)
              if model.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE}
    for i, j in enumerate(spec.joints):
        if j.name not in hinges:
            raise RobotSpecError(f"{yaml_path}: field joints.{i}.name: joint {j.name!r} is not a "
                                 f"hinge joint in {path.name} (MJCF has: {sorted(hinges)})")
    missing = hinges - set(spec.joint_names)
    if missing:
        raise RobotSpecError(f"{yaml_path}: field joints: MJCF joints {sorted(missing)} are "
                             f"missing from robot.yaml")
    for j in spec.joints:
        if mujoco.mj_name2id(model, obj.mjOBJ_ACTUATOR, j.name) < 0:
            raise RobotSpecError(f"{path}: no actuator named {j.name!r} (one motor per joint)")
    checks = [("base_body", spec.base_body, obj.mjOBJ_BODY), ("imu_site", spec.imu_site, obj.mjOBJ_SITE)]
    checks += [(f"feet.{i}", f, obj.mjOBJ_GEOM) for i, f in enumerate(spec.feet)]
    for field, name, kind in checks:
        if mujoco.mj_name2id(model, kind, name) < 0:
            raise RobotSpecError(f"{yaml_path}: field {field}: {name!r} not found in {path.name}")
    if abs(model.opt.timestep - spec.control.physics_dt) > 1e-9:
        raise RobotSpecError(f"{yaml_path}: field control.physics_dt: {spec.control.physics_dt} "
                             f"differs from the MJCF timestep {model.opt.timestep}")


def load_robot(name_or_path: str | Path, *, check_mjcf: bool = True) -> RobotSpec:
    """Load by robot name (searched, see registry) or by a path to a robot folder / robot.yaml."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        yaml_path = p
    elif p.is_dir():
        yaml_path = p / "robot.yaml"
    else:
        yaml_path = robot_dir(str(name_or_path)) / "robot.yaml"
    if not yaml_path.is_file():
        raise RobotSpecError(f"{yaml_path}: no such file")
    spec = parse_robot_yaml(yaml_path)
    if check_mjcf:
        check_against_mjcf(spec)
    return spec
