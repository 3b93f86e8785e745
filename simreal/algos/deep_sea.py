"""DeepSea: a chain where exploration is hard, to test what an entropy bonus buys.

After bsuite's "deep sea" (Osband et al., 2019), without its per-cell action shuffling:

- State: column x in 0..N-1 and step t; the episode starts at x = 0 and lasts N - 1 steps.
- Action 1 moves right (x + 1) and costs 0.01 / N; action 0 moves left (x - 1, floored at 0), free.
- Reaching x = N - 1 pays +1 and ends the episode. That needs action 1 on every one of the N - 1
  steps, so a uniformly random policy finds the reward with probability 2^-(N-1) per episode,
  while every step towards it is punished: a learner that follows its gradient before it has seen
  the reward learns to stay left.
- Observation: one-hot x followed by one-hot t (2N floats).

Best return 1 - 0.01 (N - 1) / N (just under 1); staying left returns 0. Registered as
`simreal/DeepSea{N}-v0` for the sizes in SIZES.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

SIZES = (6, 8, 10, 12, 14)


class DeepSea(gym.Env):
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, size: int = 10):
        if size < 2:
            raise ValueError(f"DeepSea size must be at least 2, got {size}")
        self.size = size
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2 * size,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.x = self.t = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(2 * self.size, dtype=np.float32)
        obs[self.x] = obs[self.size + self.t] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)           # deterministic dynamics; kept for the seeding contract
        self.x = self.t = 0
        return self._obs(), {}

    def step(self, action: Any):
        right = int(action) == 1
        reward = -0.01 / self.size if right else 0.0
        self.x = min(self.x + 1, self.size - 1) if right else max(self.x - 1, 0)
        self.t += 1
        goal = self.x == self.size - 1
        reward += 1.0 if goal else 0.0
        truncated = not goal and self.t >= self.size - 1
        return self._obs(), reward, goal, truncated, {}


def register() -> None:
    """Register simreal/DeepSea{N}-v0 for each N in SIZES (idempotent)."""
    for n in SIZES:
        env_id = f"simreal/DeepSea{n}-v0"
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=DeepSea, kwargs={"size": n})


def uniform_success_probability(size: int) -> float:
    """Chance that one episode of the uniformly random policy reaches the reward."""
    return 0.5 ** (size - 1)
