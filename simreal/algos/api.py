"""One uniform entry point to our algorithms, for `simreal train` and the study.

    agent = learn("ppo_simreal", env_or_list_of_envs, total_timesteps=100_000, seed=0,
                  config={"lr": 1e-3}, callback=print)
    torch.save(agent.state_dict(), "agent.pt")                     # tensors and plain values only
    agent = make("ppo_simreal", env.observation_space, env.action_space, config)
    agent.load_state_dict(torch.load("agent.pt", weights_only=True))
    torch.onnx.export(agent.actor_module(), torch.zeros(1, obs_dim), "policy.onnx")

`total_timesteps` is the target count of environment steps since the start of training, so a
resumed run (state=...) continues where it stopped and ends at the same total.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import gymnasium as gym

from simreal.algos import actor_critic, ppo, reinforce
from simreal.algos.common import Agent, Callback, EnvBatch, parse_config, seed_everything


@dataclass(frozen=True)
class AlgoSpec:
    config_cls: type
    make: Callable[[Any, gym.Space, gym.Space], Agent]
    train: Callable[[Agent, EnvBatch, int, Callback | None], Agent]
    episodic: bool   # collects whole episodes (Monte-Carlo) rather than fixed-length rollouts


ALGOS: dict[str, AlgoSpec] = {
    "reinforce": AlgoSpec(reinforce.ReinforceConfig,
                          lambda c, o, a: reinforce.make(c, o, a, baseline=False), reinforce.train, True),
    "reinforce_baseline": AlgoSpec(reinforce.ReinforceConfig,
                                   lambda c, o, a: reinforce.make(c, o, a, baseline=True), reinforce.train, True),
    "a2c": AlgoSpec(actor_critic.A2CConfig, actor_critic.make, actor_critic.train, False),
    "ppo_simreal": AlgoSpec(ppo.PPOConfig, ppo.make, ppo.train, False),
}


def _spec(algo: str) -> AlgoSpec:
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; choose from {sorted(ALGOS)}")
    return ALGOS[algo]


def make(algo: str, observation_space: gym.Space, action_space: gym.Space,
         config: dict | None = None) -> Agent:
    """A fresh agent (e.g. to load a saved state_dict into, for evaluation or export)."""
    spec = _spec(algo)
    return spec.make(parse_config(spec.config_cls, config, where=f"{algo} config"),
                     observation_space, action_space)


def learn(algo: str, env: gym.Env | Sequence[gym.Env], total_timesteps: int, seed: int = 0,
          config: dict | None = None, callback: Callback | None = None,
          state: dict | None = None) -> Agent:
    """Train `algo` on `env` (one env, or a list stepped in lockstep) until total_timesteps.

    callback receives dicts with event="episode" (timesteps, episode_return, episode_length,
    terminated, env, numeric info entries) or event="update" (timesteps, updates, losses, ...);
    returning False from it stops training after the current update.
    """
    if total_timesteps <= 0:
        raise ValueError(f"total_timesteps must be positive, got {total_timesteps}")
    agent, envs = start(algo, env, seed, config, state)
    return _spec(algo).train(agent, envs, total_timesteps, callback)


def start(algo: str, env: gym.Env | Sequence[gym.Env], seed: int = 0, config: dict | None = None,
          state: dict | None = None) -> tuple[Agent, EnvBatch]:
    """The seeded agent and reset envs that `learn` trains: for a caller that needs the agent
    before training starts (the study evaluates it while it learns)."""
    envs = EnvBatch(env)
    seed_everything(seed)
    agent = make(algo, envs.observation_space, envs.action_space, config)
    if state is not None:
        agent.load_state_dict(state)
    # a resumed run must not replay the episodes it already saw: offset the env seeds by progress
    envs.reset(seed=seed + agent.counters["timesteps"])
    return agent, envs
