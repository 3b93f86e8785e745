"""REINFORCE (Williams, 1992), with or without a learned state-value baseline.

The policy-gradient theorem gives, for J(theta) = E[sum_t gamma^t r_t],

    grad J = E[ sum_t psi_t * grad log pi_theta(a_t|s_t) ]

for any psi_t of the form G_t - b(s_t): the reward-to-go G_t = sum_{k>=t} gamma^(k-t) r_k
minus a baseline that depends only on the state. The baseline leaves the expectation unchanged
(E[grad log pi(a|s)] = 0 for every s) but, when b(s) ~ V(s), removes much of the variance.

Each update: play `episodes_per_update` whole episodes, compute psi_t, take one gradient step on
the policy and `value_steps` steps on the critic V_phi (regression onto G_t).
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch

from simreal.algos.common import (Agent, Callback, CommonConfig, EnvBatch, Progress, clip_and_step,
                                  collect_episodes, make_agent, normalize, report_update,
                                  reward_to_go)


@dataclass(frozen=True)
class ReinforceConfig(CommonConfig):
    lr: float = 1e-3
    episodes_per_update: int = 1      # B: episodes per gradient estimate
    normalize_returns: bool = False   # scale psi to zero mean / unit std within each batch
    value_lr: float = 1e-3            # critic learning rate (baseline variant only)
    value_steps: int = 1              # critic gradient steps per batch (baseline variant only)
    bootstrap_truncated: bool = False  # baseline variant: continue G_t past a time limit with V(s_T)
    max_grad_norm: float | None = None


def make(config: ReinforceConfig, observation_space: gym.Space, action_space: gym.Space,
         baseline: bool) -> Agent:
    algo = "reinforce_baseline" if baseline else "reinforce"
    return make_agent(algo, config, observation_space, action_space, with_value=baseline,
                      value_lr=config.value_lr)


def train(agent: Agent, envs: EnvBatch, total_timesteps: int, callback: Callback | None = None) -> Agent:
    cfg: ReinforceConfig = agent.config
    progress = Progress(callback)
    while agent.counters["timesteps"] < total_timesteps and not progress.stop:
        if cfg.anneal_lr:
            agent.set_lr_fraction(1.0 - agent.counters["timesteps"] / total_timesteps)
        episodes = collect_episodes(agent, envs, cfg.episodes_per_update, on_episode=progress)
        obs = torch.cat([e.obs for e in episodes])
        actions = torch.cat([e.actions for e in episodes])

        # G_t, reward-to-go within each episode. With a critic, a time-limited episode may be
        # continued past its end with gamma^(T-t) V(s_T) (the state was not terminal).
        returns = []
        for e in episodes:
            tail = 0.0
            if agent.value is not None and cfg.bootstrap_truncated and e.truncated:
                with torch.no_grad():
                    tail = float(agent.value(e.final_obs))
            returns.append(reward_to_go(e.rewards, cfg.gamma, tail))
        returns = torch.cat(returns)

        # psi_t = G_t - V(s_t) with the critic as it was when the episodes were played
        if agent.value is not None:
            with torch.no_grad():
                psi = returns - agent.value(obs).squeeze(-1)
        else:
            psi = returns
        if cfg.normalize_returns:
            psi = normalize(psi)

        # policy loss: -(1/N) sum_t psi_t log pi(a_t|s_t) - c_H H(pi(.|s_t)); its gradient is the
        # REINFORCE estimate averaged over the N steps of the batch (a rescaling of the per-episode
        # sum in the theorem; Adam is insensitive to that scale).
        logp, entropy = agent.policy.log_prob(obs, actions)
        policy_loss = -(psi * logp).mean() - cfg.ent_coef * entropy.mean()
        grad_norm = clip_and_step(agent, policy_loss)

        # critic: minimise (1/N) sum_t (V(s_t) - G_t)^2
        value_loss = torch.tensor(float("nan"))
        if agent.value is not None:
            for _ in range(cfg.value_steps):
                value_loss = (agent.value(obs).squeeze(-1) - returns).pow(2).mean()
                clip_and_step(agent, value_loss)

        report_update(agent, progress, policy_loss=policy_loss, value_loss=value_loss,
                      entropy=entropy.mean(), grad_norm=grad_norm)
    return agent
