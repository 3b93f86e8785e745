"""What a deployment run needs, decided before anything moves: the plan taken from the bundle's
contract (tightened by the robot spec installed here), the runtime's settings, and the errors a
refused start raises. No I/O: the start sequence, the loop and the CLI all read these."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from simreal import protocol as P
from simreal.deploy import safety as S
from simreal.errors import EXIT_INTERRUPTED, UserError
from simreal.robot.observation import RobotState


class StartRefused(UserError, RuntimeError):
    """The run did not start; torque was never enabled. The message says which field or check."""


class CommandError(UserError, ValueError):
    """--command is not vx=NUMBER,yaw=NUMBER with finite numbers (exit 2; still a ValueError)."""


class StartInterrupted(StartRefused):
    """Ctrl-C / SIGTERM before torque on (handshake, pre-flight, the operator prompt): exit 130."""

    exit_code = EXIT_INTERRUPTED


class PolicyLike(Protocol):
    def infer(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...



@dataclass(frozen=True)
class DeployPlan:
    """Everything the runtime takes from the bundle's contract (and the robot spec where tighter)."""
    robot: str
    joint_names: tuple[str, ...]
    default_pose: np.ndarray
    period: float
    joint_min: np.ndarray
    joint_max: np.ndarray
    max_target_rate: float                        # rad/s
    command_ranges: tuple[tuple[float, float], ...]   # per command term: (vx), (yaw)
    default_command: tuple[float, ...]
    max_tilt_deg: float = 60.0
    trained_pipeline: tuple[str, float] | None = None   # (kind, max_step rad/cycle) the policy was trained with
    heading_hold: float = 0.0                     # the heading hold gain it was trained with (the default)

    @property
    def n(self) -> int:
        return len(self.joint_names)

    def max_step(self, period: float) -> float:
        """Per-cycle change limit: max_target_rate * period (C3)."""
        return self.max_target_rate * period


def plan_from_contract(contract: Any, spec: Any = None) -> DeployPlan:
    """The plan from a bundle's contract (simreal.bundle.contract.Contract, or anything with its fields).

    With the robot spec installed here, limits are the tighter of the two: a bundle can narrow
    what robot.yaml allows, never widen it.
    """
    n = len(contract.joint_names)
    lo, hi = np.asarray(contract.joint_min, float), np.asarray(contract.joint_max, float)
    rate, tilt = float(contract.max_target_rate), float(contract.max_tilt_deg)
    if spec is not None and list(spec.joint_names) == list(contract.joint_names):
        lo, hi = np.maximum(lo, spec.joint_min), np.minimum(hi, spec.joint_max)
        rate, tilt = min(rate, spec.control.max_target_rate), min(tilt, spec.task.max_tilt_deg)
    default = np.asarray(contract.default_pose, float)
    for what, arr in (("default_pose", default), ("joint_min", lo), ("joint_max", hi)):
        if arr.shape != (n,):
            raise StartRefused(f"bundle contract field {what} has shape {arr.shape}, expected ({n},)")
    ranges = (tuple(map(float, contract.command_vx)), tuple(map(float, contract.command_yaw)))
    # The default command: the middle of the trained range (the policy is surest there).
    default_cmd = tuple(0.5 * (r[0] + r[1]) for r in ranges)
    pipeline = getattr(contract, "action_pipeline", None)
    return DeployPlan(str(contract.robot), tuple(contract.joint_names), default, float(contract.control_period),
                      lo, hi, rate, ranges, default_cmd, tilt,
                      None if pipeline is None else (str(pipeline.kind), float(pipeline.max_step)),
                      float(getattr(contract, "heading_hold", 0.0)))


def plan_for_robot(spec: Any) -> DeployPlan:
    """The plan a bundle exported for this robot would give (no policy: sysid's scripted excitation)."""
    from types import SimpleNamespace

    from simreal.bundle.contract import ActionPipelineModel, robot_fields

    fields = robot_fields(spec)
    fields["action_pipeline"] = ActionPipelineModel(**fields["action_pipeline"])
    return plan_from_contract(SimpleNamespace(**fields), spec)


def pipeline_problem(plan: DeployPlan, period: float) -> str | None:
    """Why this run would hand the policy other joint targets than its training env did, if it would.

    The runtime limits each target change to max_target_rate * period (C3); the training env
    applies the same limit (simreal.robot.action), and the bundle says which it trained with."""
    from simreal.robot.action import PIPELINE

    run = plan.max_step(period)
    if plan.trained_pipeline is None:
        return (f"policy.json field action_pipeline: missing, so the policy was trained without the per-cycle "
                f"change limit this run applies ({run:.4g} rad per cycle, {plan.max_target_rate:g} rad/s); "
                f"it can hold back most of its cycles. Retrain or re-export it with this simreal")
    kind, trained = plan.trained_pipeline
    if kind != PIPELINE:
        return f"policy.json field action_pipeline.kind: trained with {kind!r}, this runtime applies {PIPELINE!r}"
    if abs(run - trained) > 1e-6 * max(run, trained):
        return (f"policy.json field action_pipeline.max_step: trained with {trained:.4g} rad per "
                f"cycle, this run would limit to {run:.4g} ({plan.max_target_rate:g} rad/s at {1 / period:g} Hz)")
    return None


def contract_problems(plan: DeployPlan, info: P.Info) -> list[str]:
    """What the robot's INFO contradicts in the bundle, each naming the contract field."""
    problems = []
    if info.robot_name != plan.robot:
        problems.append(f"robot: the bundle is for {plan.robot!r}, the robot says it is {info.robot_name!r}")
    missing = [n for n in plan.joint_names if n not in info.joint_names]
    extra = [n for n in info.joint_names if n not in plan.joint_names]
    if missing or extra:
        problems.append(f"joint_names: the robot lacks {missing} and has {extra} the bundle does not know "
                        f"(robot: {list(info.joint_names)})")
    return problems


@dataclass(frozen=True)
class RuntimeConfig:
    duration_s: float | None = 10.0       # policy phase length; None = until stopped
    period_s: float | None = None         # None = the bundle's control period (--rate overrides)
    soft_start_s: float = 1.0             # ramp to the default pose at rising gains
    soft_start_kp: float = 0.25           # gain scale at the start of the ramp
    standup: tuple = ()                   # simreal.robot.standup.Keyframe waypoints before the default pose
    settle_s: float = 0.3                 # hold the default pose at full gains before the policy
    damp_s: float = 0.2                   # safe stop: DAMP this long before torque off
    stop_timeout_s: float = 1.0           # the whole safe stop, confirmed or not (+ one transaction)
    relaxed_timeout_s: float = 0.05       # per attempt, for the untimed start and stop transactions
    truth_every: int = 5                  # simulated robots: ground truth every N cycles (0 = ends only)
    handle_signals: bool = True           # SIGINT/SIGTERM -> safe stop (main thread only)
    clear_errors: bool = False            # send CLEAR_ERRORS before start (the explicit reset)
    reset_sim: bool = False               # simulated robots: SIM_RESET to the default pose before pre-flight
    pipelined: bool = False               # one transaction per cycle: observe the previous COMMAND's reply
    heading_hold: float | None = None     # simreal.robot.heading gain (0 = off); None: the bundle's trained gain
    transaction_budget_s: float | None = None   # one transaction, retries included; None: 0.4 of the
                                                # period (0.8 pipelined), so a cycle's transactions fit
    safety: S.SafetyConfig = S.SafetyConfig()

    def transaction_budget(self, period: float) -> float:
        """Seconds one transaction may take: both (fresh read + command) or one (pipelined) fit a period."""
        if self.transaction_budget_s is not None:
            return self.transaction_budget_s
        return (0.8 if self.pipelined else 0.4) * period


def robot_state(s: P.State) -> RobotState:
    """Protocol STATE (host joint order) -> the RobotState the observation function takes."""
    return RobotState(joint_pos=np.asarray(s.q, dtype=np.float64), joint_vel=np.asarray(s.dq, dtype=np.float64),
                      quat=np.asarray(s.quat, dtype=np.float64), gyro=np.asarray(s.gyro, dtype=np.float64),
                      accel=np.asarray(s.accel, dtype=np.float64), timestamp=s.timestamp_us * 1e-6)


def parse_command(text: str | None, plan: DeployPlan) -> tuple[float, float]:
    """'vx=0.4,yaw=0.1' (either key optional) -> (vx, yaw); missing keys take the plan's default."""
    from simreal.robot.command import parse_command as parse

    try:
        return parse(text, plan.default_command)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
