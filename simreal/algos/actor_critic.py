"""Advantage actor-critic (A2C: the synchronous form of Mnih et al., 2016).

Instead of waiting for whole episodes, the critic's estimate bootstraps the return after n steps:

    A_t = sum_{k=0}^{n-1} gamma^k r_{t+k} + gamma^n V(s_{t+n}) - V(s_t)      (n-step, lambda=1)

or, more generally, the GAE(lambda) mixture of all k-step estimates. The critic regresses onto
the TD target R_t = A_t + V(s_t). Bootstrapping trades a little bias (V is imperfect) for much
less variance than Monte-Carlo returns, and lets the agent update every n steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym

from simreal.algos.common import (Agent, Callback, CommonConfig, EnvBatch, Progress, clip_and_step,
                                  collect_rollout, gae, make_agent, normalize, report_update)


@dataclass(frozen=True)
class A2CConfig(CommonConfig):
    lr: float = 7e-4
    n_steps: int = 5               # steps per env between updates (the n in n-step)
    gae_lambda: float = 1.0        # 1.0 = classic n-step advantage; < 1 = GAE
    vf_coef: float = 0.5           # weight of the critic loss
    norm_adv: bool = False         # normalize advantages within each batch
    norm_reward: bool = False      # divide rewards by the running std of the discounted return


def make(config: A2CConfig, observation_space: gym.Space, action_space: gym.Space) -> Agent:
    return make_agent("a2c", config, observation_space, action_space, with_value=True)


def train(agent: Agent, envs: EnvBatch, total_timesteps: int, callback: Callback | None = None) -> Agent:
    cfg: A2CConfig = agent.config
    progress = Progress(callback)
    while agent.counters["timesteps"] < total_timesteps and not progress.stop:
        if cfg.anneal_lr:
            agent.set_lr_fraction(1.0 - agent.counters["timesteps"] / total_timesteps)
        ro = collect_rollout(agent, envs, cfg.n_steps, on_episode=progress)
        advantages, returns = gae(ro.rewards, ro.values, ro.dones, ro.last_value, cfg.gamma, cfg.gae_lambda)
        if cfg.norm_adv:
            advantages = normalize(advantages)

        logp, entropy = agent.policy.log_prob(ro.obs, ro.actions)
        values = agent.value(ro.obs).squeeze(-1)
        # actor: -(1/N) sum A_t log pi(a_t|s_t);  critic: (1/N) sum (V(s_t) - R_t)^2 ;  bonus: H
        policy_loss = -(advantages * logp).mean()
        value_loss = (values - returns).pow(2).mean()
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy.mean()
        grad_norm = clip_and_step(agent, loss)

        report_update(agent, progress, policy_loss=policy_loss, value_loss=value_loss,
                      entropy=entropy.mean(), grad_norm=grad_norm)
    return agent
