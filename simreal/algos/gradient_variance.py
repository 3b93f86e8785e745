"""How noisy is each policy-gradient estimator? Measured at fixed parameters.

Every estimator here has the form

    g = (1/B) sum_{episodes} sum_t psi_t grad log pi_theta(a_t|s_t)

and differs only in psi_t (total return G_0; reward-to-go G_t; G_t - V(s_t); a bootstrapped
advantage). We freeze the policy (and the critic), play M independent batches of B episodes,
compute g for every estimator on the SAME episodes (a paired comparison), and report the trace of
the covariance of g over the M batches: sum over parameters of Var[g_i].
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from simreal.algos.common import Episode, gae, reward_to_go

ESTIMATORS = ("total_return", "reward_to_go", "baseline", "actor_critic_td", "actor_critic_nstep",
              "actor_critic_gae")


def psi(kind: str, episode: Episode, gamma: float, value: nn.Module | None = None,
        lam: float = 0.95, n_steps: int = 5) -> torch.Tensor:
    """The weight psi_t of grad log pi(a_t|s_t) for one episode, per estimator."""
    T = episode.rewards.shape[0]
    if kind == "total_return":       # psi_t = G_0: every action credited with the whole return
        return reward_to_go(episode.rewards, gamma)[0].expand(T)
    if kind == "reward_to_go":       # psi_t = G_t: only rewards after the action
        return reward_to_go(episode.rewards, gamma)
    if value is None:
        raise ValueError(f"estimator {kind!r} needs a critic")
    with torch.no_grad():
        v = value(episode.obs).squeeze(-1)
        v_end = float(value(episode.final_obs)) if episode.truncated else 0.0
    if kind == "baseline":           # psi_t = G_t - V(s_t)
        return reward_to_go(episode.rewards, gamma) - v
    if kind == "actor_critic_nstep":
        # psi_t = sum_{k<n} gamma^k r_{t+k} + gamma^n V(s_{t+n}) - V(s_t), cut at the episode end
        v_next = torch.cat([v, torch.tensor([v_end], dtype=v.dtype)])    # V(s_0..s_T), V(s_T) = v_end
        out = torch.empty(T, dtype=v.dtype)
        for t in range(T):
            end = min(t + n_steps, T)
            disc = gamma ** torch.arange(end - t, dtype=v.dtype)
            out[t] = (disc * episode.rewards[t:end]).sum() + gamma ** (end - t) * v_next[end] - v[t]
        return out
    if kind in ("actor_critic_td", "actor_critic_gae"):
        # psi_t = GAE(lambda) advantage; lambda = 0 is the TD error r_t + gamma V(s_{t+1}) - V(s_t)
        lam_ = 0.0 if kind == "actor_critic_td" else lam
        dones = torch.zeros(T)
        dones[-1] = 0.0 if episode.truncated else 1.0
        adv, _ = gae(episode.rewards[:, None], v[:, None], dones[:, None], torch.tensor([v_end]),
                     gamma, lam_)
        return adv[:, 0]
    raise ValueError(f"unknown estimator {kind!r}; choose from {ESTIMATORS}")


def policy_gradient(policy: nn.Module, episodes: list[Episode], psis: list[torch.Tensor]) -> torch.Tensor:
    """g = (1/B) sum_e sum_t psi_t grad log pi(a_t|s_t), flattened over all policy parameters."""
    obs = torch.cat([e.obs for e in episodes])
    actions = torch.cat([e.actions for e in episodes])
    logp, _ = policy.log_prob(obs, actions)
    surrogate = (torch.cat(psis).detach() * logp).sum() / len(episodes)
    grads = torch.autograd.grad(surrogate, [p for p in policy.parameters() if p.requires_grad])
    return torch.cat([g.reshape(-1) for g in grads])


def summarize(grads: torch.Tensor) -> dict:
    """grads: [M, P] gradient estimates: trace of their covariance, squared norm of their mean."""
    g = grads.double()
    var = g.var(0, unbiased=True)
    mean_sq = float(g.mean(0).pow(2).sum())
    trace = float(var.sum())
    # ||mean g||^2 overstates ||E g||^2 by tr Cov / M (the noise left in the mean); we report both
    return {"trace_cov": trace, "mean_param_var": float(var.mean()), "mean_grad_sq_norm": mean_sq,
            "mean_grad_sq_norm_debiased": mean_sq - trace / g.shape[0], "n_batches": int(g.shape[0])}


def measure(policy: nn.Module, value: nn.Module | None, play: Callable[[int], list[Episode]],
            n_batches: int, batch_episodes: int, gamma: float, lam: float = 0.95, n_steps: int = 5,
            estimators: tuple[str, ...] = ESTIMATORS, keep_samples: bool = False) -> dict[str, dict]:
    """Gradient statistics per estimator over n_batches batches from `play(batch_episodes)`.

    keep_samples adds the [n_batches, n_params] gradients themselves under "samples".
    """
    per_kind: dict[str, list[torch.Tensor]] = {k: [] for k in estimators}
    lengths: list[int] = []
    for _ in range(n_batches):
        episodes = play(batch_episodes)
        lengths += [e.rewards.shape[0] for e in episodes]
        for kind in estimators:
            psis = [psi(kind, e, gamma, value, lam, n_steps) for e in episodes]
            per_kind[kind].append(policy_gradient(policy, episodes, psis))
    out = {kind: summarize(torch.stack(gs)) for kind, gs in per_kind.items()}
    means = {kind: torch.stack(gs).double().mean(0) for kind, gs in per_kind.items()}
    ref = means.get("reward_to_go")
    for kind in estimators:
        out[kind]["mean_episode_length"] = float(np.mean(lengths))
        if ref is not None:
            # unbiased estimators of the same gradient should point the same way
            out[kind]["cosine_to_reward_to_go_mean"] = float(
                torch.nn.functional.cosine_similarity(means[kind], ref, dim=0))
        if keep_samples:
            out[kind]["samples"] = torch.stack(per_kind[kind]).numpy()
    return out
