"""How a robot's hardware is wired: `robots/<name>/bus.yaml` (servo bus, gains, IMU, limits) and the
calibration that `simreal calibrate` writes beside it (`calibration.yaml`).

Neither lives in robot.yaml on purpose: robot.yaml is hashed into every bundle (what a policy was
trained on), and rewiring or recalibrating a robot must not invalidate its policies. Joint names
and servo ids stay in robot.yaml (`joints[].servo_id`), so there is one joint list.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simreal.errors import UserError
from simreal.files import write_atomic
from simreal.hardware import servo_models
from simreal.validation import describe_validation_error
from simreal.yamlfiles import read_mapping

BUS_FILE = "bus.yaml"
CALIBRATION_FILE = "calibration.yaml"
Family = Literal["feetech", "dynamixel"]


class WiringError(UserError, ValueError):
    """bus.yaml or calibration.yaml is missing, malformed or does not match the robot."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Gains(_Strict):
    """Position-loop registers. Dynamixel: written at torque on and scaled by the runtime's
    gain scales (soft start). Feetech STS: EEPROM, set once with the servo tool; the runtime does
    not write them (the firmware runs P only)."""
    p: int = Field(ge=0, le=16383)
    d: int = Field(default=0, ge=0, le=16383)


class ImuWiring(_Strict):
    type: Literal["bno055"] = "bno055"
    baudrate: int = Field(default=115_200, gt=0)
    timeout: float = Field(default=0.008, gt=0)       # s per attempt: request + 34-byte reply are 3.3 ms at 115200


class Limits(_Strict):
    """Software limits that trip a safe stop where the servo's firmware would not (or too late)."""
    max_temperature: float = Field(default=65.0, gt=0)    # deg C
    max_load: float = Field(default=0.95, gt=0, le=1.0)   # fraction of stall, held for `load_cycles`
    load_cycles: int = Field(default=25, ge=1)            # consecutive cycles over max_load
    min_voltage: float = Field(default=6.0, ge=0)         # V
    max_voltage: float = Field(default=14.0, gt=0)


class BusWiring(_Strict):
    default: bool = False       # `simreal deploy` uses this bus without --bus (else docs/protocol.md firmware)
    family: Family
    model: str
    baudrate: int = Field(default=1_000_000, gt=0)
    timeout: float = Field(default=0.004, gt=0)           # s per attempt; retries fill the rest of the budget
    retries: int = Field(default=2, ge=0, le=5)
    return_delay_us: int = Field(default=0, ge=0, le=510)  # as configured in the servos (mock: what it plays)
    gains: Optional[Gains] = None
    directions: dict[str, Literal[-1, 1]] = {}            # expected mounting (+1 unless listed)
    watchdog_ms: int = Field(default=100, ge=20, le=2540)  # Dynamixel bus watchdog / host watchdog
    imu: ImuWiring = ImuWiring()
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _known_model(self) -> "BusWiring":
        m = servo_models.MODELS.get(self.model)
        if m is None:
            raise ValueError(f"model: unknown servo model {self.model!r} (known: {', '.join(servo_models.MODELS)})")
        if m.family != self.family:
            raise ValueError(f"model: {self.model} is a {m.family} servo, family says {self.family}")
        return self

    @property
    def servo(self) -> servo_models.ServoModel:
        return servo_models.model(self.model)


def for_family(family: str, model: str | None = None, **fields) -> BusWiring:
    """A wiring for another bus than the robot's own (e.g. `--bus dynamixel` on a Feetech robot)."""
    return BusWiring(family=family, model=model or servo_models.DEFAULT_MODEL[family], **fields)


def load_wiring(spec, path: str | Path | None = None) -> BusWiring:
    """bus.yaml beside robot.yaml (or `path`), checked against the robot's joint names."""
    p = Path(path) if path else Path(spec.root) / BUS_FILE
    if not p.is_file():
        raise WiringError(f"{p}: no such file (the robot's bus wiring: family, model, baudrate)")
    try:
        w = BusWiring.model_validate(read_mapping(p, WiringError))
    except ValidationError as e:
        raise WiringError(describe_validation_error(str(p), e, "invalid bus wiring")) from None
    unknown = sorted(set(w.directions) - set(spec.joint_names))
    if unknown:
        raise WiringError(f"{p} field directions: {unknown} are not joints of {spec.name}")
    return w


# --------------------------------------------------------------------------- calibration

class JointCalibration(_Strict):
    servo_id: int = Field(ge=0, le=253)
    zero: int                        # raw ticks at 0 rad (the reference pose minus its angle)
    direction: Literal[-1, 1]
    range: tuple[int, int]           # raw ticks seen while the joint was moved through its range


class Calibration(_Strict):
    robot: str
    family: Family
    model: str
    created: str = ""
    joints: dict[str, JointCalibration]

    def to_rad(self, joint: str, ticks: float, model: servo_models.ServoModel) -> float:
        c = self.joints[joint]
        return c.direction * (ticks - c.zero) * 2 * 3.141592653589793 / model.ticks_per_rev

    def to_ticks(self, joint: str, rad: float, model: servo_models.ServoModel) -> int:
        c = self.joints[joint]
        return int(round(c.zero + c.direction * rad * model.ticks_per_rev / (2 * 3.141592653589793)))


def calibration_path(spec, path: str | Path | None = None) -> Path:
    return Path(path) if path else Path(spec.root) / CALIBRATION_FILE


def load_calibration(spec, wiring: BusWiring, path: str | Path | None = None) -> Calibration:
    """The calibration for this robot and bus; refuses one for other joints, ids, bus or model."""
    p = calibration_path(spec, path)
    if not p.is_file():
        raise WiringError(f"{p}: no calibration (run `simreal calibrate {spec.name} --port PORT` "
                          f"with the robot in its reference pose); torque is refused without one")
    try:
        c = Calibration.model_validate(read_mapping(p, WiringError))
    except ValidationError as e:
        raise WiringError(describe_validation_error(str(p), e, "invalid calibration")) from None
    if c.robot != spec.name:
        raise WiringError(f"{p} field robot: calibration is for {c.robot!r}, this robot is {spec.name!r}")
    if (c.family, c.model) != (wiring.family, wiring.model):
        raise WiringError(f"{p} field model: calibrated on {c.family} {c.model}, the bus is "
                          f"{wiring.family} {wiring.model}")
    if sorted(c.joints) != sorted(spec.joint_names):
        raise WiringError(f"{p} field joints: calibrated {sorted(c.joints)}, robot has {sorted(spec.joint_names)}")
    for j in spec.joints:
        if c.joints[j.name].servo_id != j.servo_id:
            raise WiringError(f"{p} field joints.{j.name}.servo_id: calibrated on servo "
                              f"{c.joints[j.name].servo_id}, robot.yaml says {j.servo_id}")
    return c


def save_calibration(c: Calibration, path: Path) -> None:
    """Atomic: a crash leaves the old file or the new one, never half of one."""
    data = c.model_dump(mode="json")
    data["joints"] = {k: {**v, "range": list(v["range"])} for k, v in data["joints"].items()}
    text = ("# written by `simreal calibrate`; ticks are raw servo positions\n"
            + yaml.safe_dump(data, sort_keys=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode())


def now_text() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
