"""The policy-gradient theorem, checked where the exact gradient can be computed.

On a small random finite-horizon MDP, J(theta) = E[sum_{t<H} r_t] is a differentiable function
of the policy parameters (propagate the state distribution forward through the dynamics), so
autograd gives the exact grad J. The Monte-Carlo estimators of gradient_variance.py, fed with
episodes sampled from the same policy, must agree with it within their standard error; an
estimator with an action-dependent "baseline" must not.

The policy sees [one_hot(s), one_hot(t)] (a time-dependent policy, natural for a finite horizon)
and is our CategoricalPolicy with no hidden layer, so the code under test is the code we train with.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from simreal.algos.common import CategoricalPolicy, Episode
from simreal.algos.gradient_variance import policy_gradient, psi, summarize


@dataclass(frozen=True)
class TabularMDP:
    transitions: torch.Tensor   # [S, A, S] P(s'|s, a)
    rewards: torch.Tensor       # [S, A]    r(s, a)
    start: torch.Tensor         # [S]       initial state distribution
    horizon: int

    @property
    def n_states(self) -> int:
        return self.rewards.shape[0]

    @property
    def n_actions(self) -> int:
        return self.rewards.shape[1]

    def obs(self, states: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """[one_hot(s), one_hot(t)] for a batch of states at time t."""
        s = nn.functional.one_hot(states, self.n_states).float()
        tt = nn.functional.one_hot(torch.as_tensor(t).expand(states.shape), self.horizon).float()
        return torch.cat([s, tt], -1)


def random_mdp(n_states: int = 4, n_actions: int = 3, horizon: int = 5, seed: int = 0) -> TabularMDP:
    g = torch.Generator().manual_seed(seed)
    transitions = torch.rand(n_states, n_actions, n_states, generator=g).pow(3)
    transitions /= transitions.sum(-1, keepdim=True)
    rewards = torch.randn(n_states, n_actions, generator=g)
    start = torch.zeros(n_states)
    start[0] = 1.0
    return TabularMDP(transitions, rewards, start, horizon)


def random_policy(mdp: TabularMDP, seed: int = 0, scale: float = 1.0) -> CategoricalPolicy:
    """A linear softmax policy with random (not near-uniform) weights, float64 for exactness."""
    torch.manual_seed(seed)
    policy = CategoricalPolicy(mdp.n_states + mdp.horizon, mdp.n_actions, hidden=()).double()
    with torch.no_grad():
        for p in policy.parameters():
            p.normal_(0.0, scale)
    return policy


def _action_probs(mdp: TabularMDP, policy: CategoricalPolicy, t: int) -> torch.Tensor:
    states = torch.arange(mdp.n_states)
    return torch.softmax(policy.logits(mdp.obs(states, t).double()), -1)   # [S, A]


def exact_objective(mdp: TabularMDP, policy: CategoricalPolicy) -> torch.Tensor:
    """J = sum_t sum_{s,a} d_t(s) pi_t(a|s) r(s,a), with d_{t+1}(s') = sum d_t(s) pi_t(a|s) P(s'|s,a)."""
    d, J = mdp.start.double(), torch.zeros((), dtype=torch.float64)
    P, R = mdp.transitions.double(), mdp.rewards.double()
    for t in range(mdp.horizon):
        pi = _action_probs(mdp, policy, t)
        J = J + (d[:, None] * pi * R).sum()
        d = torch.einsum("s,sa,sax->x", d, pi, P)
    return J


def exact_gradient(mdp: TabularMDP, policy: CategoricalPolicy) -> torch.Tensor:
    grads = torch.autograd.grad(exact_objective(mdp, policy), list(policy.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


class TableValue(nn.Module):
    """V_t(s) by backward induction: V_H = 0, V_t(s) = sum_a pi_t(a|s)[r(s,a) + sum P V_{t+1}]."""

    def __init__(self, mdp: TabularMDP, policy: CategoricalPolicy):
        super().__init__()
        self.n_states = mdp.n_states
        table = torch.zeros(mdp.horizon + 1, mdp.n_states, dtype=torch.float64)
        with torch.no_grad():
            for t in range(mdp.horizon - 1, -1, -1):
                pi = _action_probs(mdp, policy, t)
                q = mdp.rewards.double() + mdp.transitions.double() @ table[t + 1]
                table[t] = (pi * q).sum(-1)
        self.register_buffer("table", table[:-1])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        s, t = obs[..., :self.n_states].argmax(-1), obs[..., self.n_states:].argmax(-1)
        return self.table[t, s].unsqueeze(-1)


@torch.no_grad()
def sample_episodes(mdp: TabularMDP, policy: CategoricalPolicy, n: int, g: torch.Generator) -> list[Episode]:
    states = torch.multinomial(mdp.start, n, replacement=True, generator=g)
    obs, actions, rewards = [], [], []
    for t in range(mdp.horizon):
        o = mdp.obs(states, t).double()
        a = torch.multinomial(torch.softmax(policy.logits(o), -1), 1, generator=g).squeeze(-1)
        obs.append(o), actions.append(a), rewards.append(mdp.rewards[states, a].double())
        states = torch.multinomial(mdp.transitions[states, a], 1, generator=g).squeeze(-1)
    obs, actions, rewards = torch.stack(obs, 1), torch.stack(actions, 1), torch.stack(rewards, 1)
    last = mdp.obs(states, mdp.horizon - 1).double()
    return [Episode(obs[i], actions[i], rewards[i], False, last[i]) for i in range(n)]


def check_theorem(n_batches: int = 200, batch_episodes: int = 20, seed: int = 0,
                  mdp: TabularMDP | None = None) -> dict:
    """Mean of each estimator over n_batches vs the exact gradient, with z-scores and variances.

    Includes one deliberately wrong estimator ("action_baseline": psi_t = G_t - r(s_t, a_t)),
    which depends on the action and so is biased: the check must be able to tell.
    """
    mdp = mdp or random_mdp(seed=seed)
    policy = random_policy(mdp, seed=seed)
    value = TableValue(mdp, policy)
    exact = exact_gradient(mdp, policy)
    g = torch.Generator().manual_seed(seed + 1)
    kinds = ("total_return", "reward_to_go", "baseline", "action_baseline")
    grads: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
    for _ in range(n_batches):
        episodes = sample_episodes(mdp, policy, batch_episodes, g)
        for kind in kinds:
            if kind == "action_baseline":
                psis = [psi("reward_to_go", e, 1.0) - e.rewards for e in episodes]
            else:
                psis = [psi(kind, e, 1.0, value) for e in episodes]
            grads[kind].append(policy_gradient(policy, episodes, psis))
    out = {"exact_grad_norm": float(exact.norm()), "n_params": int(exact.numel()),
           "n_episodes": n_batches * batch_episodes, "estimators": {}}
    for kind, gs in grads.items():
        G = torch.stack(gs)
        stats = summarize(G)
        error = G.mean(0) - exact
        # per-parameter z-scores of the mean (a parameter whose estimate never varies gets a
        # tiny floor on its standard error, so a constant wrong value still shows as huge z)
        stderr = (G.std(0, unbiased=True) / n_batches ** 0.5).clamp_min(1e-9)
        out["estimators"][kind] = {
            **stats, "max_abs_z": float((error / stderr).abs().max()),
            # ||mean - exact|| in units of its expected size if unbiased, sqrt(tr Cov / M): ~1 if unbiased
            "error_in_stderrs": float(error.norm() / (stats["trace_cov"] / n_batches) ** 0.5),
            "rel_error_of_mean": float(error.norm() / exact.norm())}
    return out
