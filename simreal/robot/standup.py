"""robots/<name>/standup.yaml: a scripted stand-up, the waypoints of the start ramp.

    description: from lying on the belly, legs folded under the body
    keyframes:
      - seconds: 1.5
        pose: {fl_hip: 1.2, fl_knee: -2.3}     # rad; joints left out are at the default pose
      - seconds: 1.0
        pose: {...}

With a stand-up (`simreal finetune --reset standup`), the runtime's soft start drives the robot
from its pose at torque on through each keyframe, then to the default pose over --soft-start
seconds: a smoothstep per segment, gains rising over the whole ramp, every target through the
safety layer's joint-limit and rate limits. Only after the start checks pass (upright within
start_max_tilt_deg, at rest): a stand-up gets a robot from sitting or lying on its belly onto its
feet, it does not right a robot lying on its side (that stays the operator's job).

Not in robot.yaml: robot.yaml is hashed into every bundle, and a new stand-up must not
invalidate the policies trained before it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simreal.errors import UserError
from simreal.validation import describe_validation_error
from simreal.yamlfiles import read_mapping

STANDUP_FILE = "standup.yaml"


class StandUpError(UserError, ValueError):
    """standup.yaml is missing, malformed or does not fit the robot."""


class _KeyframeModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    seconds: float = Field(gt=0, le=10)
    pose: dict[str, float]


class _StandUpModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    description: str = ""
    keyframes: list[_KeyframeModel] = Field(min_length=1)


@dataclass(frozen=True)
class Keyframe:
    pose: tuple[float, ...]       # rad, the robot's joint order
    seconds: float                # to reach it from the previous waypoint


def load_standup(spec, path: str | Path | None = None) -> tuple[Keyframe, ...]:
    """The keyframes of PATH (default robots/<name>/standup.yaml), every joint inside its limits."""
    p = Path(path) if path is not None else Path(spec.root) / STANDUP_FILE
    try:
        m = _StandUpModel.model_validate(read_mapping(p, StandUpError))
    except ValidationError as e:
        raise StandUpError(describe_validation_error(str(p), e, "invalid stand-up")) from None
    names = list(spec.joint_names)
    out = []
    for i, kf in enumerate(m.keyframes):
        pose = [float(x) for x in spec.default_pose]
        for joint, value in kf.pose.items():
            where = f"{p}: field keyframes.{i}.pose.{joint}"
            if joint not in names:
                raise StandUpError(f"{where}: not a joint of robot {spec.name} ({', '.join(names)})")
            j = names.index(joint)
            if not spec.joint_min[j] <= value <= spec.joint_max[j]:
                raise StandUpError(f"{where}: {value:g} rad is outside the joint's limits "
                                   f"[{spec.joint_min[j]:g}, {spec.joint_max[j]:g}]")
            pose[j] = value
        out.append(Keyframe(tuple(pose), float(kf.seconds)))
    return tuple(out)
