"""What the robot runs while it fine-tunes, and what it is rewarded for.

    action = clip(a_sim(obs) + bound * delta(obs), -1, 1)          (ResidualPolicy)
    reward = the training reward's velocity-tracking terms on the estimated velocity
             - RESIDUAL_PENALTY * mean(delta^2)                     (reward)

The same two serve the robot's episodes (simreal.finetune.session) and the simulated warm-up
(simreal.finetune.warmup), so the critic warms up on the rewards it will then see.
"""
from __future__ import annotations

import numpy as np

from simreal.envs.rewards import TRACKING_SIGMA, YAW_SIGMA
from simreal.finetune.learner import ResidualLearner
from simreal.finetune.velocity import Velocity
from simreal.robot.action import action_to_targets

RESIDUAL_PENALTY = 0.1        # x mean(delta^2): stay near the simulation policy unless it pays


class ResidualPolicy:
    """What the runtime calls: the bundle's action plus bound x the learner's delta, as the
    bundle's own (action, joint targets) pair. Keeps the deltas of this episode, one per call."""

    def __init__(self, base, learner: ResidualLearner, bound: float, *, explore: bool = True):
        self.base, self.learner, self.bound, self.explore = base, learner, bound, explore
        c = base.contract
        self.default_pose, self.action_scale = np.asarray(c.default_pose), float(c.action_scale)
        self.deltas: list[np.ndarray] = []

    @property
    def obs_dim(self) -> int:
        return self.base.obs_dim

    def infer(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a_sim, _ = self.base.infer(obs)
        delta = self.learner.act(obs, explore=self.explore)
        self.deltas.append(delta)
        action = np.clip(a_sim + self.bound * delta, -1.0, 1.0).astype(np.float32)
        return action, action_to_targets(action, self.default_pose, self.action_scale).astype(np.float32)


def reward(v: Velocity, command, delta: np.ndarray, scales: dict) -> float:
    """The training reward's tracking terms on the estimated velocity, less a residual penalty."""
    track = np.exp(-((v.vx - command[0]) ** 2 + v.vy ** 2) / TRACKING_SIGMA)
    yaw = np.exp(-(v.yaw_rate - command[1]) ** 2 / YAW_SIGMA)
    return float(scales.get("tracking_lin_vel", 1.0) * track + scales.get("tracking_yaw", 0.5) * yaw
                 - RESIDUAL_PENALTY * float(np.mean(delta ** 2)))
