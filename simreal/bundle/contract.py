"""policy.json: the contract a bundle carries, its schema, and the check against a robot spec.

A bundle (see bundle.py) is a folder:

    policy.json   this contract (validated by `Contract`, unknown or missing fields refused)
    policy.onnx   obs -> (action, joint_targets), normalization and action scaling inside
    weights.npz   the same network as plain arrays, for the numpy evaluator (no pickle)
    residual.npz  (fine-tuned bundles only) the residual network learned on the robot, likewise
    probe.npz     a few observations and the training-time policy's outputs on them: the
                  loader runs its backend on them and refuses a bundle that disagrees
    parity.json   export-time report: training policy vs ONNX vs numpy, inference latency

Loading reads only JSON, ONNX and allow_pickle=False .npz; nothing in a bundle is unpickled.
This module needs only pydantic and numpy, so it runs on a robot's small onboard computer.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simreal.files import sha256_file
from simreal.validation import describe_validation_error
from simreal.errors import UserError

FORMAT = "simreal-policy/1"
CONTRACT_FILE = "policy.json"
ONNX_FILE = "policy.onnx"
WEIGHTS_FILE = "weights.npz"
RESIDUAL_FILE = "residual.npz"
PROBE_FILE = "probe.npz"
PARITY_FILE = "parity.json"

ONNX_INPUT = "obs"                              # float32 [batch, obs_dim], raw observation
ONNX_OUTPUTS = ("action", "joint_targets")     # float32 [batch, n_joints]: clipped action, rad

Sha256 = Field(pattern=r"^[0-9a-f]{64}$")


class BundleError(UserError, ValueError):
    """A bundle cannot be used: the message names the file and the field."""


class ContractMismatch(BundleError):
    """The bundle was made for a different robot (joints, period, layout, hash...)."""


class ContractWarning(UserWarning):
    """The bundle loads, but something differs from the robot it was trained for."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# ---- the schema ---------------------------------------------------------------------------------
class FileRef(_Strict):
    """A file of the bundle, pinned by size and hash so truncation or tampering is caught."""
    path: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")     # a plain name inside the bundle folder
    bytes: int = Field(ge=1)
    sha256: str = Sha256


class ObsTermModel(_Strict):
    name: str
    size: int = Field(ge=1)
    scale: float


class ObservationModel(_Strict):
    """Exactly `ObservationLayout.to_dict()`: terms in order, each with size and scale."""
    history: int = Field(ge=1)
    terms: list[ObsTermModel] = Field(min_length=1)


class ActionPipelineModel(_Strict):
    """simreal.robot.action.ActionPipeline as trained: the runtime must apply the same change limit."""
    kind: str
    max_step: float = Field(gt=0)           # rad per control cycle (max_target_rate * control_period)


class ServoModel(_Strict):
    kp: float = Field(gt=0)                 # N*m/rad
    kd: float = Field(ge=0)                 # N*m*s/rad
    torque_limit: float = Field(gt=0)       # N*m
    velocity_limit: float = Field(gt=0)     # rad/s


class Normalization(_Strict):
    """obs_n = clip((obs - mean) / sqrt(var + epsilon), -clip, clip), computed in `precision`.

    float64 is SB3's VecNormalize (numpy float64, then cast to float32); float32 is the
    RunningMeanStd inside simreal.algos agents (mean and std cast to float32 first). Arrays
    `obs_mean` and `obs_var` are in the weights file when kind is "standardize".
    """
    kind: Literal["none", "standardize"]
    precision: Literal["float32", "float64"] = "float64"
    epsilon: float = Field(default=1e-8, ge=0)
    clip: float = Field(default=10.0, gt=0)


Activation = Literal["tanh", "relu", "elu", "leaky_relu", "identity"]


class LayerModel(_Strict):
    """y = act(x @ weight.T + bias); weight is [out_features, in_features] (torch's layout)."""
    weight: str
    bias: str
    in_features: int = Field(ge=1)
    out_features: int = Field(ge=1)
    activation: Activation
    alpha: float = 0.0                      # ELU alpha / LeakyReLU negative slope


class HeadModel(_Strict):
    """Last layer's output -> action. clip: min(max(z, low), high).
    tanh: low + (tanh(z) + 1) * 0.5 * (high - low). The action is then clipped to [-1, 1]."""
    squash: Literal["clip", "tanh"]
    low: list[float]
    high: list[float]


class NetworkModel(_Strict):
    weights: FileRef
    normalization: Normalization
    layers: list[LayerModel] = Field(min_length=1)
    head: HeadModel


class OnnxModel(_Strict):
    file: FileRef
    opset: int = Field(ge=1)
    ir_version: int = Field(ge=1)
    input: Literal["obs"] = ONNX_INPUT
    outputs: tuple[Literal["action"], Literal["joint_targets"]] = ONNX_OUTPUTS


class TrainingModel(_Strict):
    """How the policy was trained: algorithm, length, seed, and the randomization it saw.

    Ranges are robot.yaml's `randomization` block at scale 1; the env shrinks each toward nominal
    by `randomization_scale` (simreal.envs.randomization), and applies none when randomize=false.
    """
    algo: str
    timesteps: int = Field(ge=0)
    seed: int
    randomize: bool
    randomization_scale: float = Field(default=1.0, ge=0, le=1)
    action_latency_steps: tuple[int, int]
    imu_latency_steps: tuple[int, int]
    noise: dict[str, float]
    randomization: dict[str, Any]
    config_sha256: Optional[str] = None
    source: Optional[str] = None            # the run directory / checkpoint exported


class FinetuneModel(_Strict):
    """Where a residual came from: the fine-tuning run on a robot (simreal.finetune)."""
    source: str                             # the fine-tuning run folder
    base_sha256: str = Sha256               # contract_sha256 of the bundle it was fine-tuned from
    algo: str
    robot_s: float = Field(ge=0)            # policy time on the robot
    transitions: int = Field(ge=0)
    episodes: int = Field(ge=0)
    falls: int = Field(ge=0)                # episodes on the robot that ended in a fall
    sim_warmup: int = Field(default=0, ge=0)   # simulated transitions the critic was warmed up on
    velocity: str                           # the velocity source its rewards came from
    privileged_velocity: bool               # True: the mock's ground truth, not a real sensor


class ResidualModel(_Strict):
    """A bounded correction learned on the robot, on top of `network` (the simulation policy):

        action = clip(network(obs) + bound * residual(obs), -1, 1)

    `residual` takes the raw observation and its tanh head keeps it in [-1, 1], so no fine-tuned
    action ever leaves `bound` (action units) of the simulation policy's."""
    bound: float = Field(gt=0, le=2)
    network: NetworkModel
    finetune: FinetuneModel


class ProvenanceModel(_Strict):
    git: dict[str, Any]
    exported_at: str
    versions: dict[str, str]


class Contract(_Strict):
    format: Literal["simreal-policy/1"]
    robot: str
    robot_hash: str = Sha256                 # RobotSpec.spec_hash: robot.yaml + MJCF files
    joint_names: list[str] = Field(min_length=1)
    default_pose: list[float]                # rad, in joint_names order
    joint_min: list[float]
    joint_max: list[float]
    action_scale: float = Field(gt=0)        # rad per unit action
    control_period: float = Field(gt=0)      # s
    max_target_rate: float = Field(gt=0)     # rad/s, robot.yaml control.max_target_rate
    action_pipeline: ActionPipelineModel | None = None   # None: trained before the env applied the
                                                         # runtime's change limit (deploy refuses it)
    servo: ServoModel
    command_vx: tuple[float, float]          # m/s, the command range it was trained on
    command_yaw: tuple[float, float]         # rad/s
    heading_hold: float = Field(default=0.0, ge=0)   # the heading hold gain it was trained with
                                                     # (simreal.robot.heading): the runtime's default
    max_tilt_deg: float = Field(gt=0)        # the env ended episodes beyond this tilt
    observation: ObservationModel
    obs_dim: int = Field(ge=1)
    action_dim: int = Field(ge=1)
    onnx: OnnxModel
    network: NetworkModel
    residual: Optional[ResidualModel] = None    # fine-tuned on a robot (ONNX and numpy include it)
    probe: FileRef
    parity_tolerance: float = Field(gt=0)    # max |training policy - ONNX| allowed at export
    training: TrainingModel
    provenance: ProvenanceModel
    evaluation: Optional[dict[str, Any]] = None   # figures at export time (simreal.train.evaluate)

    def command_kwargs(self) -> dict[str, Any]:
        """The env kwargs that give a simulation this policy's trained command layer: its command
        ranges and heading hold."""
        return {"command_vx": tuple(self.command_vx), "command_yaw": tuple(self.command_yaw),
                "heading_hold": self.heading_hold}

    @model_validator(mode="after")
    def _consistent(self) -> "Contract":
        n = len(self.joint_names)
        if len(set(self.joint_names)) != n:
            raise ValueError("joint_names has duplicates")
        for name in ("default_pose", "joint_min", "joint_max"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries, joint_names {n}")
        if self.action_dim != n:
            raise ValueError(f"action_dim {self.action_dim} != number of joints {n}")
        size = self.observation.history * sum(t.size for t in self.observation.terms)
        if self.obs_dim != size:
            raise ValueError(f"obs_dim {self.obs_dim} != observation layout size {size}")
        nets = [("network", self.network)] + ([("residual.network", self.residual.network)] if self.residual else [])
        for field, net in nets:
            if net.layers[0].in_features != self.obs_dim or net.layers[-1].out_features != n:
                raise ValueError(f"{field} maps {net.layers[0].in_features} -> {net.layers[-1].out_features}, "
                                 f"expected {self.obs_dim} -> {n}")
            for i, (a, b) in enumerate(zip(net.layers, net.layers[1:])):
                if b.in_features != a.out_features:
                    raise ValueError(f"{field}.layers.{i + 1}.in_features is {b.in_features}, expected {a.out_features}")
            if len(net.head.low) != n or len(net.head.high) != n:
                raise ValueError(f"{field}.head low/high must have {n} entries")
        if self.residual and (self.residual.network.head.squash != "tanh"
                              or set(self.residual.network.head.low) != {-1.0}
                              or set(self.residual.network.head.high) != {1.0}):
            raise ValueError("residual.network.head must be tanh onto [-1, 1] (what keeps it within bound)")
        return self


# ---- reading ------------------------------------------------------------------------------------
def file_ref(path: Path) -> FileRef:
    path = Path(path)
    return FileRef(path=path.name, bytes=path.stat().st_size, sha256=sha256_file(path))


def validation_message(source: str, err: ValidationError) -> str:
    return describe_validation_error(source, err, f"does not match the {FORMAT} schema")


def contract_sha256(bundle_dir: Path) -> str:
    """The digest that identifies a bundle: sha256 of its policy.json, which pins every other
    file by its sha256 (what `simreal export --check` prints and `--expect-sha256` compares)."""
    path = Path(bundle_dir) / CONTRACT_FILE
    if not path.is_file():
        raise BundleError(f"{path}: missing; {bundle_dir} is not a policy bundle")
    return sha256_file(path)


def read_contract(bundle_dir: Path) -> Contract:
    """Parse and validate BUNDLE/policy.json; BundleError names the file and each bad field."""
    path = Path(bundle_dir) / CONTRACT_FILE
    if not Path(bundle_dir).is_dir():
        raise BundleError(f"{bundle_dir}: not a directory (a bundle is a folder with {CONTRACT_FILE})")
    if not path.is_file():
        raise BundleError(f"{path}: missing; {bundle_dir} is not a policy bundle")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: expected a JSON object at the top level")
    if raw.get("format") != FORMAT:
        raise BundleError(f"{path}: field format is {raw.get('format')!r}, this simreal reads "
                          f"{FORMAT!r}")
    try:
        return Contract.model_validate(raw)
    except ValidationError as e:
        raise BundleError(validation_message(str(path), e)) from None


def verify_file(bundle_dir: Path, ref: FileRef, field: str) -> Path:
    """The file exists with the size and sha256 the contract pins; returns its path."""
    path = Path(bundle_dir) / ref.path
    if not path.is_file():
        raise BundleError(f"{path}: missing (listed in {CONTRACT_FILE} field {field})")
    size = path.stat().st_size
    if size != ref.bytes:
        raise BundleError(f"{path}: {size} bytes, {CONTRACT_FILE} field {field}.bytes says "
                          f"{ref.bytes} (truncated or replaced?)")
    digest = sha256_file(path)
    if digest != ref.sha256:
        raise BundleError(f"{path}: sha256 {digest[:12]}... differs from {CONTRACT_FILE} field "
                          f"{field}.sha256 {ref.sha256[:12]}... (corrupted or modified)")
    return path


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """An .npz of plain numeric arrays; object arrays (pickles) are refused."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:   # object arrays need pickle: refused
        raise BundleError(f"{path}: refused ({e})") from None
    except Exception as e:  # noqa: BLE001  (zipfile/format errors of a damaged file)
        raise BundleError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from None


# ---- the robot side ------------------------------------------------------------------------------
def robot_fields(spec) -> dict[str, Any]:
    """The contract fields that come from a RobotSpec (what check_against_spec compares)."""
    from simreal.robot.action import ActionPipeline
    from simreal.robot.observation import layout_for

    layout = layout_for(spec)
    s = spec.servo
    return {
        "robot": spec.name, "robot_hash": spec.spec_hash, "joint_names": spec.joint_names,
        "default_pose": [float(x) for x in spec.default_pose],
        "joint_min": [float(x) for x in spec.joint_min], "joint_max": [float(x) for x in spec.joint_max],
        "action_scale": float(spec.control.action_scale),
        "control_period": float(spec.control.period),
        "max_target_rate": float(spec.control.max_target_rate),
        "action_pipeline": ActionPipeline.for_robot(spec).to_contract(),
        "servo": {"kp": s.kp, "kd": s.kd, "torque_limit": s.torque_limit,
                  "velocity_limit": s.velocity_limit},
        "command_vx": list(spec.task.command_vx), "command_yaw": list(spec.task.command_yaw),
        "max_tilt_deg": float(spec.task.max_tilt_deg),
        "observation": layout.to_dict(), "obs_dim": layout.size, "action_dim": spec.n_joints,
    }


def trained_commands(spec, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The contract's command layer: the training env's `command_vx` / `command_yaw` kwargs (else
    robot.yaml's) and its `heading_hold` gain (else 0). They belong to the policy (what it learned
    to track, and how), not to the robot."""
    out: dict[str, Any] = {k: [float(x) for x in kwargs.get(k, getattr(spec.task, k))]
                           for k in ("command_vx", "command_yaw")}
    out["heading_hold"] = float(kwargs.get("heading_hold", 0.0))
    return out


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    """Dotted path and values of the first place two JSON-like values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                return f"{path}.{k}: {'missing in bundle' if k not in a else 'missing in robot'}"
            d = _first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: bundle has {len(a)} entries, robot has {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{path}.{i}")
            if d:
                return d
        return None
    if isinstance(a, float) or isinstance(b, float):
        return None if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else f"{path}: bundle {a}, robot {b}"
    return None if a == b else f"{path}: bundle {a!r}, robot {b!r}"


def check_against_spec(contract: Contract, spec, *, allow_hash_mismatch: bool = False) -> list[str]:
    """Refuse (ContractMismatch) a bundle whose robot, joints, pose, action scale, period or
    observation layout differ from `spec`; a different robot hash is refused unless
    `allow_hash_mismatch`. Softer differences (servo gains, limits) are returned as warnings."""
    want = robot_fields(spec)
    got = contract.model_dump(mode="json")

    def refuse(field: str, detail: str) -> None:
        raise ContractMismatch(f"{CONTRACT_FILE} field {field}: {detail}")

    if got["robot"] != want["robot"]:
        refuse("robot", f"bundle is for robot {got['robot']!r}, this robot is {want['robot']!r}")
    if got["joint_names"] != want["joint_names"]:
        same = sorted(got["joint_names"]) == sorted(want["joint_names"])
        refuse("joint_names", f"bundle has {got['joint_names']}, robot has {want['joint_names']}"
               + (" (same joints in another order)" if same else ""))
    for field in ("control_period", "action_scale", "default_pose", "observation", "obs_dim"):
        d = _first_difference(got[field], want[field], field)
        if d:
            raise ContractMismatch(f"{CONTRACT_FILE} field {d}")
    warn: list[str] = []
    if got["robot_hash"] != want["robot_hash"]:
        msg = (f"{CONTRACT_FILE} field robot_hash: bundle was trained on robot files with hash "
               f"{got['robot_hash'][:12]}..., {spec.root} has {want['robot_hash'][:12]}... "
               f"(robot.yaml or its MJCF changed since training)")
        if not allow_hash_mismatch:
            raise ContractMismatch(msg + "; pass allow_hash_mismatch=True (--allow-hash-mismatch) "
                                         "to run it anyway")
        warn.append(msg + "; allowed by override")
    for field in ("servo", "joint_min", "joint_max", "max_target_rate", "max_tilt_deg"):   # not the
        # command ranges: a training config may change them (trained_commands), and the runtime uses the bundle's
        d = _first_difference(got[field], want[field], field)
        if d:
            warn.append(f"{CONTRACT_FILE} field {d} (trained with different values)")
    for w in warn:
        warnings.warn(w, ContractWarning, stacklevel=3)
    return warn


RUN_SUBDIR = "run"          # optional: the training checkpoint fine-tuning starts from


def is_bundle(path: str | Path) -> bool:
    """A folder holding a policy.json: what every command that takes RUN_OR_BUNDLE asks first."""
    return (Path(path) / CONTRACT_FILE).is_file()
