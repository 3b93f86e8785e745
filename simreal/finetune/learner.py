"""The off-policy learner behind on-robot fine-tuning: a bounded residual on the simulation policy.

The robot runs  action = clip(a_sim(obs) + bound * delta(obs), -1, 1),  where a_sim is the
bundle's network (frozen) and delta in [-1, 1]^n is what CrossQ (sb3-contrib: no target networks,
batch renormalization; high sample efficiency) or SAC learns. With delta near 0 at the start the
robot walks as it did in simulation; `bound` caps how far fine-tuning may ever move an action.

Transitions come from the deploy runtime's cycles (simreal.finetune.session), updates run between
episodes (never inside the 50 Hz loop). An update whose loss or gradients leave any weight
non-finite is undone (the weights and optimizer state before it are put back) and raises
NonFiniteUpdate; nothing non-finite is added to the buffer or saved.
"""
from __future__ import annotations

import copy
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from simreal.train import sb3


class NonFiniteUpdate(RuntimeError):
    """A gradient step produced a non-finite weight; the last good weights were restored."""


class _Spaces(gym.Env):
    """An env with spaces only: SB3 builds its model and buffer from it; nothing steps it."""

    def __init__(self, obs_dim: int, n: int):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)

    def reset(self, *, seed=None, options=None):
        raise RuntimeError("the fine-tuning learner is fed by the robot, not stepped")

    def step(self, action):
        raise RuntimeError("the fine-tuning learner is fed by the robot, not stepped")


def model_class(algo: str):
    if algo == "crossq":
        from sb3_contrib import CrossQ

        return CrossQ
    if algo == "sac":
        from stable_baselines3 import SAC

        return SAC
    raise ValueError(f"--algo {algo!r}: crossq or sac")


class ResidualLearner:
    def __init__(self, obs_dim: int, n: int, *, algo: str = "crossq", seed: int = 0, buffer_size: int = 100_000,
                 batch_size: int = 256, net: tuple[int, ...] = (256, 256), learning_rate: float = 3e-4,
                 initial_std: float = 0.3, ent_coef: str = "auto_0.02"):
        torch.set_num_threads(1)
        self.algo, self.batch_size = algo, batch_size
        # exploration: delta ~ tanh(N(0, 0.3)) is ~0.3 x bound per joint; SB3's entropy coefficient
        # starts at 1, which against rewards near 2 per step would drive the first updates toward
        # noise rather than gait: start it small and let it adapt
        kwargs = dict(policy_kwargs=dict(net_arch=list(net)), buffer_size=buffer_size, batch_size=batch_size,
                      learning_starts=0, learning_rate=learning_rate, seed=seed, device="cpu", verbose=0,
                      ent_coef=ent_coef)
        self.model = model_class(algo)("MlpPolicy", _Spaces(obs_dim, n), **kwargs)
        from stable_baselines3.common.logger import configure

        self.model.set_logger(configure(None, []))     # train() records its losses; we keep none
        self._start_at_zero(initial_std)

    def _start_at_zero(self, std: float) -> None:
        """delta's mean starts at exactly 0 (the simulation policy unchanged) and its exploration
        noise at `std` before the tanh."""
        actor = self.model.actor
        with torch.no_grad():
            actor.mu.weight.zero_()
            actor.mu.bias.zero_()
            actor.log_std.weight.zero_()
            actor.log_std.bias.fill_(float(np.log(std)))

    @property
    def buffer_len(self) -> int:
        b = self.model.replay_buffer
        return b.buffer_size if b.full else b.pos

    def act(self, obs: np.ndarray, *, explore: bool) -> np.ndarray:
        self.model.policy.set_training_mode(False)
        delta, _ = self.model.predict(obs.astype(np.float32), deterministic=not explore)
        return np.clip(np.asarray(delta, dtype=np.float64), -1.0, 1.0)

    def add(self, obs, delta, reward: float, next_obs, terminated: bool) -> None:
        for name, v in (("observation", obs), ("delta", delta), ("reward", reward), ("next observation", next_obs)):
            if not np.all(np.isfinite(v)):
                raise ValueError(f"refused a transition: its {name} is not finite")
        self.model.replay_buffer.add(np.asarray(obs, np.float32)[None], np.asarray(next_obs, np.float32)[None],
                                     np.asarray(delta, np.float32)[None], np.array([reward], np.float32),
                                     np.array([terminated]), [{}])
        self.model.num_timesteps += 1

    def update(self, gradient_steps: int, *, critic_only: bool = False) -> int:
        """Up to `gradient_steps` updates (none until the buffer holds a batch); how many ran.

        critic_only: the actor, its optimizer and the entropy coefficient are put back after the
        steps, so only the critic learns (the warm-up: the first actor updates then follow a
        critic that has seen data, not a random one)."""
        if gradient_steps <= 0 or self.buffer_len < self.batch_size:
            return 0
        saved = self._snapshot()
        why = ""
        try:
            self.model.train(gradient_steps=gradient_steps, batch_size=self.batch_size)
        except (ValueError, RuntimeError) as exc:     # torch refuses a NaN distribution parameter mid-way
            why = f" ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        if why or not self.finite():
            self._restore(saved)
            raise NonFiniteUpdate(f"an update left a non-finite weight{why}; the weights and optimizer "
                                  f"state from before its {gradient_steps} gradient steps are back")
        if critic_only:
            keep = self._snapshot(("policy.critic", "critic.optimizer"))
            self._restore(saved)
            self._restore(keep)
        return gradient_steps

    def _snapshot(self, names: tuple[str, ...] | None = None) -> dict:
        """Deep copies of state dicts (and the entropy coefficient) by dotted name."""
        if names is None:
            state_dicts, variables = sb3._split_params(self.model)
            names = tuple(state_dicts) + tuple(variables)
        out = {}
        for n in names:
            obj = sb3._get(self.model, n)
            out[n] = obj.detach().clone() if isinstance(obj, torch.Tensor) else copy.deepcopy(obj.state_dict())
        return out

    def _restore(self, saved: dict) -> None:
        for n, v in saved.items():
            target = sb3._get(self.model, n)
            if isinstance(v, torch.Tensor):
                with torch.no_grad():
                    target.copy_(v)            # in place: the entropy optimizer holds this tensor
            else:
                target.load_state_dict(v)

    def observations(self) -> np.ndarray:
        """The observations in the replay buffer, [n, obs_dim]."""
        return self.model.replay_buffer.observations[:self.buffer_len].reshape(self.buffer_len, -1).copy()

    def clear_buffer(self) -> None:
        """Forget every transition (after the simulated warm-up: robot data only from here)."""
        self.model.replay_buffer.reset()
        self.model.num_timesteps = 0

    def finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.policy.parameters())

    def write(self, directory: Path) -> None:
        if not self.finite():
            raise NonFiniteUpdate("refusing to save a non-finite network")
        sb3.write_tensors(self.model, directory)
        sb3.write_replay_buffer(self.model, directory)

    def read(self, directory: Path, state: dict) -> None:
        sb3.read_tensors(self.model, directory)
        sb3.read_replay_buffer(self.model, directory / "replay_buffer.npz")
        sb3.restore_counters(self.model, state)

    def counters(self) -> dict[str, int]:
        return sb3.counters(self.model)
