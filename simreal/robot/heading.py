"""Heading hold: the yaw-rate command the policy sees also corrects the heading the robot has lost.

A velocity-tracking policy is open loop in heading: a small yaw-rate bias (an asymmetric robot, a
slippery floor, a servo that lags) integrates into a turn nobody commanded. Legged stacks close
that loop in the command layer, not in the policy (legged_gym's heading command: yaw rate =
k * wrap(target heading - heading)). Here the target heading starts where the robot faces when
the policy takes over and turns at the operator's yaw rate; the policy is given

    yaw_observed = clip(yaw_commanded + gain * wrap(reference - heading), *trained yaw range)

so it only needs to track yaw rates it was trained on. A bundle trained without turning
commands has a zero-width yaw range, and the hold is then a no-op. The shipped quadruped trains
with gain 1 ((rad/s) per rad: a 1 s time constant); its contract records the gain, and the
runtime, eval and gap default to the gain a policy was trained with. The heading comes from the
observed IMU quaternion (simreal.robot.observation.heading_of): the same input on the robot and in
simulation. The training env, `simreal eval`, `simreal gap` and the deploy runtime use this one
function.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

START = math.nan   # the reference before the first cycle


def wrap_angle(a: np.ndarray | float) -> np.ndarray:
    """Angle(s) wrapped to [-pi, pi)."""
    return (np.asarray(a, dtype=np.float64) + math.pi) % (2 * math.pi) - math.pi


@dataclass(frozen=True)
class HeadingHold:
    gain: float                        # 0 = off: the command passes through unchanged
    yaw_range: tuple[float, float]     # rad/s: what the policy was trained to track
    period: float                      # s per control cycle: how far the reference turns per call

    def __post_init__(self):
        if not (math.isfinite(self.gain) and self.gain >= 0):
            raise ValueError(f"heading hold gain: {self.gain!r} is not a finite number >= 0")

    @property
    def active(self) -> bool:
        return self.gain > 0 and self.yaw_range[1] > self.yaw_range[0]

    def command(self, command: np.ndarray, reference: np.ndarray | float, heading: np.ndarray | float
                ) -> tuple[np.ndarray, np.ndarray]:
        """(the command the policy sees, the reference for the next cycle). `command` is (..., 2)
        (vx, yaw rate); `reference` and `heading` (rad) broadcast over its leading axes. A NaN
        reference (START) is a first cycle: the reference starts at the heading."""
        command = np.asarray(command, dtype=np.float64)
        heading = np.asarray(heading, dtype=np.float64)
        reference = np.where(np.isnan(reference), heading, reference)
        yaw = command[..., 1]
        nxt = reference + yaw * self.period
        if not self.active:
            return command, nxt
        out = command.copy()
        lo, hi = self.yaw_range
        out[..., 1] = np.minimum(np.maximum(yaw + self.gain * wrap_angle(reference - heading), lo), hi)
        return out, nxt
