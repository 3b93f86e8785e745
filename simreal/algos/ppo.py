"""Proximal policy optimization with the clipped surrogate (Schulman et al., 2017).

A2C takes one gradient step per batch because after that step the batch is off-policy. PPO reuses
each batch for several epochs of minibatch steps, and keeps the new policy near the one that
collected the data by clipping the probability ratio r_t = pi_theta(a_t|s_t) / pi_old(a_t|s_t):

    L_clip = E[ min( r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t ) ]

Once r_t leaves [1-eps, 1+eps] in the direction the advantage favours, the gradient is zero: a
cheap stand-in for a trust region. Advantages are GAE(lambda); the critic regresses onto A + V.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch

from simreal.algos.common import (Agent, Callback, CommonConfig, EnvBatch, Progress, clip_and_step,
                                  collect_rollout, gae, make_agent, normalize, report_update)


@dataclass(frozen=True)
class PPOConfig(CommonConfig):
    n_steps: int = 2048            # steps per env per rollout
    n_epochs: int = 10             # passes over each rollout
    minibatch_size: int = 64
    gae_lambda: float = 0.95
    clip_range: float = 0.2        # eps in the clipped surrogate
    vf_coef: float = 0.5
    norm_adv: bool = True          # normalize advantages within each minibatch
    target_kl: float | None = None  # stop the epochs early when approx KL exceeds this
    norm_reward: bool = False      # divide rewards by the running std of the discounted return


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, clip_range: float) -> torch.Tensor:
    """Per-sample min(r A, clip(r, 1-eps, 1+eps) A): the objective PPO maximises."""
    return torch.min(ratio * advantages, ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages)


def make(config: PPOConfig, observation_space: gym.Space, action_space: gym.Space) -> Agent:
    return make_agent("ppo_simreal", config, observation_space, action_space, with_value=True)


def train(agent: Agent, envs: EnvBatch, total_timesteps: int, callback: Callback | None = None) -> Agent:
    cfg: PPOConfig = agent.config
    progress = Progress(callback)
    while agent.counters["timesteps"] < total_timesteps and not progress.stop:
        if cfg.anneal_lr:
            agent.set_lr_fraction(1.0 - agent.counters["timesteps"] / total_timesteps)
        ro = collect_rollout(agent, envs, cfg.n_steps, on_episode=progress)
        advantages, returns = gae(ro.rewards, ro.values, ro.dones, ro.last_value, cfg.gamma, cfg.gae_lambda)

        # flatten [T, N, ...] -> [T*N, ...]
        n = ro.rewards.numel()
        obs, actions = ro.obs.reshape(n, -1), ro.actions.reshape(n, *ro.actions.shape[2:])
        logp_old, advantages, returns = ro.logp.reshape(n), advantages.reshape(n), returns.reshape(n)

        clip_fracs, stop_early = [], False
        for _ in range(cfg.n_epochs):
            for idx in torch.randperm(n).split(cfg.minibatch_size):
                logp, entropy = agent.policy.log_prob(obs[idx], actions[idx])
                log_ratio = logp - logp_old[idx]
                ratio = log_ratio.exp()
                adv = normalize(advantages[idx]) if cfg.norm_adv else advantages[idx]
                policy_loss = -clipped_surrogate(ratio, adv, cfg.clip_range).mean()
                # critic: (1/2)(V(s_t) - R_t)^2
                value_loss = 0.5 * (agent.value(obs[idx]).squeeze(-1) - returns[idx]).pow(2).mean()
                loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy.mean()
                grad_norm = clip_and_step(agent, loss)
                with torch.no_grad():
                    # KL(old || new) ~ E[(r - 1) - log r]  (non-negative, low-variance estimator)
                    approx_kl = float(((ratio - 1) - log_ratio).mean())
                    clip_fracs.append(float(((ratio - 1).abs() > cfg.clip_range).float().mean()))
                if cfg.target_kl is not None and approx_kl > cfg.target_kl:
                    stop_early = True
                    break
            if stop_early:
                break

        report_update(agent, progress, policy_loss=policy_loss, value_loss=value_loss,
                      entropy=entropy.mean(), grad_norm=grad_norm, approx_kl=approx_kl,
                      clip_frac=sum(clip_fracs) / len(clip_fracs))
    return agent
