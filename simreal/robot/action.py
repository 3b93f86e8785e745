"""The ONE action pipeline: policy output in [-1, 1] -> the joint targets on the wire (radians).

    targets = default_pose + action_scale * clip(a, -1, 1)          (scale and offset)
    targets = clip(targets, joint_min, joint_max)                   (joint-limit clamp)
    targets = previous + clip(targets - previous, -max_step, max_step)   (per-cycle change limit)
    targets = clip(targets, joint_min, joint_max)

`previous` is the last target sent (the default pose at the start of an episode, as after the
runtime's soft start). max_step = robot.yaml control.max_target_rate * control.period. The
training envs run the whole pipeline (ActionPipeline.targets); the ONNX graph and the numpy
backend compute its first stage (their `joint_targets`), and the runtime's SafetyLayer applies
the clamp and change limit with these same functions; the bundle's contract carries max_step,
so a runtime that would limit differently refuses the bundle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PIPELINE = "scale-clamp-ratelimit/1"     # the contract's action_pipeline.kind


def action_to_targets(action: np.ndarray, default_pose: np.ndarray, action_scale: float) -> np.ndarray:
    """targets = default + scale * clip(a, -1, 1)."""
    return default_pose + action_scale * np.minimum(np.maximum(action, -1.0), 1.0)


def targets_to_action(targets: np.ndarray, default_pose: np.ndarray, action_scale: float) -> np.ndarray:
    """Inverse of action_to_targets (for actions already inside [-1, 1])."""
    return (np.asarray(targets) - default_pose) / action_scale


def clamp_targets(targets: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Joint targets clipped into [lo, hi] (min/max: NaN is the caller's to refuse first)."""
    return np.minimum(np.maximum(targets, lo), hi)


def limit_change(targets: np.ndarray, previous: np.ndarray, max_step: float | np.ndarray) -> np.ndarray:
    """Move from `previous` toward `targets` by at most max_step per joint (rad per cycle)."""
    return previous + np.minimum(np.maximum(targets - previous, -max_step), max_step)


@dataclass(frozen=True)
class ActionPipeline:
    default_pose: np.ndarray
    scale: float
    joint_min: np.ndarray
    joint_max: np.ndarray
    max_step: float                 # rad per control cycle

    @classmethod
    def for_robot(cls, spec: Any) -> ActionPipeline:
        c = spec.control
        return cls(np.asarray(spec.default_pose, float), float(c.action_scale), np.asarray(spec.joint_min, float),
                   np.asarray(spec.joint_max, float), float(c.max_target_rate * c.period))

    def targets(self, action: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """The targets sent this cycle, for actions of shape (n,) or (batch, n)."""
        want = clamp_targets(action_to_targets(action, self.default_pose, self.scale), self.joint_min, self.joint_max)
        return clamp_targets(limit_change(want, previous, self.max_step), self.joint_min, self.joint_max)

    def to_contract(self) -> dict[str, Any]:
        return {"kind": PIPELINE, "max_step": self.max_step}
