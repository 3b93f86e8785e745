"""Greedy evaluation: what a policy has learned, without its exploration noise.

Training returns mix learning with exploration (DQN's epsilon, a stochastic policy's sampling), and
a 100-episode training average cannot reach 475 before 47,500 steps have gone into the window
itself. So the study also evaluates every algorithm the same way while it trains: every `every`
environment steps, `episodes` episodes of the greedy policy (argmax / mean action) from the same
fixed reset seeds, stepped as one batch so one forward pass serves them all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np

Act = Callable[[np.ndarray], Any]    # a batch of observations -> a batch of env actions


@dataclass(frozen=True)
class GreedyEval:
    every: int = 5_000      # env steps between evaluations while training
    episodes: int = 10
    seed: int = 10_000      # episode i of every evaluation starts from reset(seed=seed + i)

    def __post_init__(self) -> None:
        if self.every <= 0 or self.episodes <= 0:
            raise ValueError(f"greedy_eval: every and episodes must be positive, got {self}")


def evaluate(act: Act, envs: list[gym.Env], seed: int) -> list[float]:
    """Returns of one greedy episode per env (env i reset with seed + i), stepped as a batch."""
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    totals = np.zeros(len(envs))
    live = np.ones(len(envs), dtype=bool)
    while live.any():
        idx = np.flatnonzero(live)
        actions = np.asarray(act(obs[idx]))
        for j, a in zip(idx, actions):
            o, r, term, trunc, _ = envs[j].step(a)
            obs[j], totals[j] = o, totals[j] + float(r)
            live[j] = not (term or trunc)
    return totals.tolist()


class PeriodicEval:
    """Evaluates `act` at every multiple of `spec.every` env steps (called by the step counter).

    The evaluation envs are its own, so the training envs, their seeds and the learner's random
    state are untouched: a run with evaluation trains exactly as one without.
    """

    def __init__(self, env_id: str, spec: GreedyEval):
        self.spec = spec
        self.envs = [gym.make(env_id) for _ in range(spec.episodes)]
        self.act: Act | None = None          # set once the learner exists
        self.points: list[dict] = []         # {"steps", "returns"} per evaluation

    def on_step(self, steps: int) -> None:
        if self.act is not None and steps % self.spec.every == 0:
            self.points.append({"steps": steps, "returns": evaluate(self.act, self.envs, self.spec.seed)})

    def final(self, act: Act) -> list[float]:
        """The trained policy's returns on the same episodes."""
        return evaluate(act, self.envs, self.spec.seed)


def first_reaching(points: list[dict], threshold: float) -> int | None:
    """Env steps at the first evaluation whose mean return reaches `threshold`, or None."""
    return next((p["steps"] for p in points if np.mean(p["returns"]) >= threshold), None)


def mean_at(points: list[dict], steps: int) -> float | None:
    """Mean greedy return at the evaluation taken at `steps`, or None if there was none."""
    return next((float(np.mean(p["returns"])) for p in points if p["steps"] == steps), None)


def held_fraction(points: list[dict], threshold: float) -> float | None:
    """Of the evaluations after the first that reached `threshold`, the fraction still at it:
    1.0 for a policy that stays solved, lower for one that learns and forgets. None if none did
    or the first hit was the last evaluation."""
    means = [float(np.mean(p["returns"])) for p in points]
    first = next((i for i, m in enumerate(means) if m >= threshold), None)
    if first is None or first == len(means) - 1:
        return None
    return float(np.mean([m >= threshold for m in means[first + 1:]]))
