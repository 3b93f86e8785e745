"""Gap profiles: how the mock robot differs from the model the policy was trained on.

A profile is a YAML file in `configs/gap/` (`nominal`, `worn`, `heavy`, `slippery` ship with the
repo). Physics keys become a `DomainParams` and go through `randomization.apply`, the code path
the training env uses, so "what the mock changed" and "what training randomized" are one
vocabulary. Sensor keys (noise, IMU bias, encoder resolution) and mock-only keys (backlash,
reply latency and jitter, baud rate) are read by the mock itself.

`--gap` takes a profile name, a path to a YAML file, `key=value` overrides on top of nominal,
or a name followed by overrides: `worn`, `friction=0.5,kp_scale=0.8`, `worn,noise.gyro=0.2`.
Per-joint keys take one number (every joint) or a list in the robot's joint order; mass_scale
takes one number or a list per body (world excluded). Unknown keys are errors naming the file
(or the --gap item) and suggesting the closest key.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simreal.robot.spec import NoiseSpec
from simreal.yamlfiles import config_dirs, parse_set, read_mapping
from simreal.validation import field_problem, unknown_key
from simreal.errors import UserError

Numbers = Union[float, list[float]]   # one value for all joints (bodies), or one per joint (body)


class GapError(UserError, ValueError):
    """A gap profile is wrong or unknown; the message names the file or --gap item and the key."""


class GapProfile(BaseModel):
    """One reality gap. Defaults are the nominal robot: no gap at all."""
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    description: str = ""
    # --- physics: DomainParams fields, applied by simreal.envs.randomization.apply ---------------
    friction: float = Field(default=1.0, gt=0)          # floor and feet sliding friction
    mass_scale: Numbers = 1.0                           # x every body's mass and inertia
    torso_added_mass: float = 0.0                       # kg on the base (payload, battery)
    com_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)   # m, base centre of mass shift
    kp_scale: Numbers = 1.0                             # servo stiffness
    kd_scale: Numbers = 1.0                             # servo damping gain
    torque_scale: Numbers = 1.0                         # stall torque (supply voltage, wear)
    velocity_limit_scale: Numbers = 1.0                 # no-load speed (servo variant)
    damping_scale: Numbers = 1.0                        # passive joint damping
    frictionloss_scale: Numbers = 1.0                   # gearbox dry friction
    armature_scale: Numbers = 1.0                       # reflected rotor inertia
    joint_offset: Numbers = 0.0                         # rad, encoder calibration error
    terrain_height: float = Field(default=0.0, ge=0)    # m peak-to-peak bumps
    # --- sensors -------------------------------------------------------------------------------
    noise: NoiseSpec = NoiseSpec()                      # std devs per reading (as in training)
    imu_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)    # rad/s gyro bias
    encoder_ticks_per_rev: Optional[int] = Field(default=None, gt=0)   # None: robot.yaml's value
    # --- mock-only: not part of training's randomization -----------------------------------------
    backlash: float = Field(default=0.0, ge=0)          # rad, total gear play (see MockRobot)
    target_slew: float = Field(default=0.0, ge=0)       # rad/s: the firmware's own target moves at most this fast (0: at once; STS3215 ~5.2)
    # whole-frame action delay: each COMMAND's targets reach the servos with the COMMAND this many
    # frames later (firmware that applies the previous frame); training's action_latency_steps
    action_delay: int = Field(default=0, ge=0, le=8)
    latency: float = Field(default=0.0005, ge=0)        # s, request received -> state measured
    jitter: float = Field(default=0.0, ge=0)            # s, extra delay ~ U(0, jitter) per reply
    baudrate: Optional[int] = Field(default=None, gt=0)  # wire time; None: robot.yaml's serial.baudrate

    @field_validator("mass_scale", "kp_scale", "kd_scale", "torque_scale", "velocity_limit_scale")
    @classmethod
    def _positive(cls, v: Numbers) -> Numbers:
        if any(x <= 0 for x in np.atleast_1d(v)):
            raise ValueError(f"must be > 0, got {v}")
        return v

    @field_validator("damping_scale", "frictionloss_scale", "armature_scale")
    @classmethod
    def _non_negative(cls, v: Numbers) -> Numbers:
        if any(x < 0 for x in np.atleast_1d(v)):
            raise ValueError(f"must be >= 0, got {v}")
        return v

    def domain_params(self, n_joints: int, n_bodies: int, source: str = "gap profile"):
        """The physics part as DomainParams: nominal, with this profile's values on top."""
        from simreal.envs import randomization

        def arr(key: str, n: int, what: str) -> np.ndarray:
            v = np.asarray(getattr(self, key), dtype=np.float64)
            if v.ndim == 0:
                return np.full(n, float(v))
            if v.shape != (n,):
                raise GapError(f"{source}: {key}: has {v.size} values, the robot has {n} {what}")
            return v

        base = randomization.nominal(n_joints, n_bodies)
        per_joint = {k: arr(k, n_joints, "joints") for k in (
            "kp_scale", "kd_scale", "torque_scale", "velocity_limit_scale", "damping_scale",
            "frictionloss_scale", "armature_scale", "joint_offset")}
        return dataclasses.replace(
            base, **per_joint, friction=self.friction, mass_scale=arr("mass_scale", n_bodies, "bodies"),
            torso_added_mass=self.torso_added_mass, com_offset=np.array(self.com_offset),
            noise=self.noise, imu_bias=np.array(self.imu_bias), terrain_height=self.terrain_height)


# --------------------------------------------------------------------------- finding and loading

def gap_dirs() -> list[Path]:
    """Where named profiles live: `gap/` under every config directory (see simreal.yamlfiles)."""
    return [d / "gap" for d in config_dirs()]


def list_gaps() -> list[str]:
    names: dict[str, None] = {}
    for d in gap_dirs():
        for f in sorted(d.glob("*.yaml")) if d.is_dir() else []:
            names.setdefault(f.stem, None)
    return list(names)


def gap_file(name: str) -> Path:
    for d in gap_dirs():
        f = d / f"{name}.yaml"
        if f.is_file():
            return f
    raise GapError(f"unknown gap profile {name!r}; known: {', '.join(list_gaps()) or 'none'} "
                   f"(searched: {', '.join(map(str, gap_dirs()))})")


def _describe(err: dict, sources: dict[str, str], default_source: str) -> str:
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    source = sources.get(loc[0], default_source) if loc else default_source
    if err["type"] == "extra_forbidden":
        model = GapProfile if len(loc) == 1 else NoiseSpec if loc[0] == "noise" else None
        return f"{source}: {key}: {unknown_key(loc[-1], list(model.model_fields) if model else [])}"
    return f"{source}: {key}: {field_problem(err)}"


def validate(data: dict[str, Any], sources: dict[str, str] | None = None,
             default_source: str = "gap profile") -> GapProfile:
    """Validate a mapping; errors name the source (file or --gap item) of each bad key."""
    try:
        return GapProfile.model_validate(data)
    except ValidationError as e:
        lines = [_describe(err, sources or {}, default_source) for err in e.errors()]
        raise GapError("invalid gap profile:\n  " + "\n  ".join(lines)) from None


def _split_items(text: str) -> list[str]:
    """Split on commas outside brackets, so `kp_scale=[0.8,0.9],friction=0.5` is two items."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth <= 0:
            items.append(text[start:i].strip())
            start = i + 1
    return [s for s in items if s]


def load_gap(text: str | None) -> tuple[str, GapProfile]:
    """Parse a --gap argument -> (label for reports, profile). None or '' is nominal."""
    items = _split_items(text or "")
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    label = "nominal"
    if items and "=" not in items[0]:
        first = items.pop(0)
        path = Path(first) if first.endswith((".yaml", ".yml")) else gap_file(first)
        data = read_mapping(path, GapError)
        sources = {k: str(path) for k in data}
        label = first
    try:
        overrides = parse_set(items, GapError)
    except GapError as e:
        raise GapError(str(e).replace("--set", "--gap")) from None
    for item in items:
        sources[item.partition("=")[0].strip().split(".")[0]] = f"--gap {item}"
    for k, v in overrides.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
    if items:
        label = ",".join([label] + items)
    return label, validate(data, sources, default_source=label)
