"""The math of simreal.algos against values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simreal.algos.common import (CategoricalPolicy, CommonConfig, GaussianPolicy, RunningMeanStd, gae,
                                  parse_config, reward_to_go)
from simreal.algos.ppo import PPOConfig, clipped_surrogate


# ---- returns --------------------------------------------------------------------------------
def test_reward_to_go_by_hand():
    # rewards 1, 2, 3 with gamma 0.9:
    #   G_2 = 3;  G_1 = 2 + 0.9*3 = 4.7;  G_0 = 1 + 0.9*4.7 = 5.23 (the discounted return)
    g = reward_to_go(torch.tensor([1.0, 2.0, 3.0]), 0.9)
    assert torch.allclose(g, torch.tensor([5.23, 4.7, 3.0]))


def test_reward_to_go_with_bootstrap_and_undiscounted():
    # bootstrap 10 after the last step: G_2 = 3 + 9 = 12; G_1 = 2 + 10.8 = 12.8; G_0 = 1 + 11.52
    g = reward_to_go(torch.tensor([1.0, 2.0, 3.0]), 0.9, bootstrap=10.0)
    assert torch.allclose(g, torch.tensor([12.52, 12.8, 12.0]))
    # gamma = 1: plain suffix sums
    assert reward_to_go(torch.tensor([1.0, 0.0, 2.0, 1.0]), 1.0).tolist() == [4.0, 3.0, 3.0, 1.0]


# ---- GAE ------------------------------------------------------------------------------------
def _col(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float32)[:, None]   # [T, N=1]


def test_gae_by_hand():
    # gamma 0.9, lambda 0.8, r = 1,1,1, V = 0.5,1.0,1.5, V(s_3) = 2, no episode end:
    #   delta_2 = 1 + 0.9*2.0 - 1.5 = 1.3
    #   delta_1 = 1 + 0.9*1.5 - 1.0 = 1.35
    #   delta_0 = 1 + 0.9*1.0 - 0.5 = 1.4
    #   A_2 = 1.3;  A_1 = 1.35 + 0.72*1.3 = 2.286;  A_0 = 1.4 + 0.72*2.286 = 3.04592
    adv, ret = gae(_col(1, 1, 1), _col(0.5, 1.0, 1.5), _col(0, 0, 0), torch.tensor([2.0]), 0.9, 0.8)
    assert torch.allclose(adv[:, 0], torch.tensor([3.04592, 2.286, 1.3]))
    assert torch.allclose(ret[:, 0], torch.tensor([3.54592, 3.286, 2.8]))


def test_gae_stops_at_episode_end():
    # the episode ends after t=1: delta_1 = 1 - 1.0 = 0 (no bootstrap), and A_1 ignores A_2
    #   A_2 = 1.3 (new episode);  A_1 = 0;  A_0 = 1.4 + 0.72*0 = 1.4
    adv, _ = gae(_col(1, 1, 1), _col(0.5, 1.0, 1.5), _col(0, 1, 0), torch.tensor([2.0]), 0.9, 0.8)
    assert torch.allclose(adv[:, 0], torch.tensor([1.4, 0.0, 1.3]))


def test_gae_limits_are_td_error_and_n_step_return():
    torch.manual_seed(0)
    r, v, last = torch.randn(6, 3), torch.randn(6, 3), torch.randn(3)
    dones = torch.zeros(6, 3)
    td, _ = gae(r, v, dones, last, 0.95, 0.0)
    next_v = torch.cat([v[1:], last[None]])
    assert torch.allclose(td, r + 0.95 * next_v - v, atol=1e-6)
    mc, _ = gae(r, v, dones, last, 0.95, 1.0)
    for env in range(3):
        expected = reward_to_go(r[:, env], 0.95, bootstrap=float(last[env])) - v[:, env]
        assert torch.allclose(mc[:, env], expected, atol=1e-5)


# ---- log-probabilities ----------------------------------------------------------------------
def test_categorical_log_prob_gradient_matches_finite_differences():
    torch.manual_seed(0)
    policy = CategoricalPolicy(3, 4, hidden=(5,)).double()
    with torch.no_grad():
        for p in policy.parameters():
            p.normal_(0, 0.7)
    obs, action = torch.randn(1, 3, dtype=torch.float64), torch.tensor([2])
    logp, _ = policy.log_prob(obs, action)
    grads = torch.autograd.grad(logp.sum(), list(policy.parameters()))
    eps, checked = 1e-6, 0
    with torch.no_grad():  # central differences, one parameter entry at a time
        for p, g in zip(policy.parameters(), grads):
            flat, gflat = p.data.view(-1), g.view(-1)
            for i in range(flat.numel()):
                old = float(flat[i])
                flat[i] = old + eps
                up = float(policy.log_prob(obs, action)[0])
                flat[i] = old - eps
                down = float(policy.log_prob(obs, action)[0])
                flat[i] = old
                assert abs((up - down) / (2 * eps) - float(gflat[i])) < 1e-6, (p.shape, i)
                checked += 1
    assert checked == sum(p.numel() for p in policy.parameters()) > 0


def test_categorical_score_function_is_onehot_minus_probs():
    # d log softmax(z)_a / dz = onehot(a) - softmax(z): the "score" REINFORCE multiplies by psi
    policy = CategoricalPolicy(1, 3, hidden=())
    z = policy.logits[0].bias                # with a zero input, the logits are the bias
    with torch.no_grad():
        z.copy_(torch.tensor([0.3, -1.2, 2.0]))
    logp, entropy = policy.log_prob(torch.zeros(1, 1), torch.tensor([0]))
    (g,) = torch.autograd.grad(logp.sum(), z)
    p = torch.softmax(z.detach(), -1)
    assert torch.allclose(g, torch.tensor([1.0, 0.0, 0.0]) - p, atol=1e-6)
    assert torch.allclose(entropy, -(p * p.log()).sum(-1), atol=1e-6)


def test_categorical_sampling_follows_the_policy():
    torch.manual_seed(0)
    policy = CategoricalPolicy(2, 3, hidden=())
    with torch.no_grad():
        policy.logits[0].weight.zero_()
        policy.logits[0].bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    actions, logp = policy.sample(torch.zeros(20000, 2))
    freq = torch.bincount(actions, minlength=3).double() / 20000
    p = torch.softmax(torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64), -1)
    assert torch.allclose(freq, p, atol=0.01)
    assert torch.allclose(logp, p.log().float()[actions], atol=1e-6)


@pytest.mark.parametrize("state_dependent", [False, True])
def test_gaussian_log_prob_and_entropy_match_torch(state_dependent):
    torch.manual_seed(1)
    policy = GaussianPolicy(4, 3, hidden=(8,), state_dependent_std=state_dependent, init_log_std=-0.5)
    obs, act = torch.randn(7, 4), torch.randn(7, 3)
    mean, log_std = policy.mean_log_std(obs)
    ref = torch.distributions.Normal(mean, log_std.exp())
    logp, entropy = policy.log_prob(obs, act)
    assert torch.allclose(logp, ref.log_prob(act).sum(-1), atol=1e-5)
    assert torch.allclose(entropy, ref.entropy().sum(-1), atol=1e-5)
    assert torch.allclose(log_std, torch.full_like(log_std, -0.5), atol=0.05)


# ---- PPO clipping ---------------------------------------------------------------------------
@pytest.mark.parametrize("ratio, adv, value, grad", [
    # A > 0: the objective grows with r up to 1+eps, then is flat (no incentive to go further)
    (1.0, 2.0, 2.0, 2.0),
    (1.19, 2.0, 2.38, 2.0),
    (1.21, 2.0, 2.4, 0.0),
    (0.5, 2.0, 1.0, 2.0),       # below 1-eps with A > 0: not clipped (the min keeps r A)
    # A < 0: flat below 1-eps, but above 1+eps the unclipped (worse) value is kept
    (0.81, -1.0, -0.81, -1.0),
    (0.79, -1.0, -0.8, 0.0),
    (1.5, -1.0, -1.5, -1.0),
])
def test_ppo_clipped_surrogate_at_the_boundary(ratio, adv, value, grad):
    r = torch.tensor(ratio, requires_grad=True)
    obj = clipped_surrogate(r, torch.tensor(adv), 0.2)
    (g,) = torch.autograd.grad(obj, r)
    assert float(obj.detach()) == pytest.approx(value)
    assert float(g) == pytest.approx(grad)


# ---- normalizer and config ------------------------------------------------------------------
def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(500, 4)) * np.array([1, 10, 0.1, 1])
    rms = RunningMeanStd(4)
    for chunk in np.array_split(data, [1, 7, 100, 101, 333]):
        rms.update(chunk)
    assert np.allclose(rms.mean.numpy(), data.mean(0), rtol=1e-4)
    assert np.allclose(rms.var.numpy(), data.var(0), rtol=1e-3)
    x = torch.tensor(data[:3], dtype=torch.float32)
    expected = (data[:3] - data.mean(0)) / np.sqrt(data.var(0))
    assert np.allclose(rms(x).numpy(), expected, atol=1e-3)


def test_parse_config_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown key.*'lrr'"):
        parse_config(PPOConfig, {"lrr": 1e-3}, where="hyperparams")
    with pytest.raises(ValueError, match="hyperparams.n_epochs: expected an integer"):
        parse_config(PPOConfig, {"n_epochs": 2.5}, where="hyperparams")
    with pytest.raises(ValueError, match="norm_obs: expected true/false"):
        parse_config(PPOConfig, {"norm_obs": "yes"})
    with pytest.raises(ValueError, match="activation"):
        parse_config(CommonConfig, {"activation": "sigmoid"})
    with pytest.raises(ValueError, match="finite"):
        parse_config(CommonConfig, {"lr": math.nan})
    cfg = parse_config(PPOConfig, {"lr": 1, "hidden": [32, 32], "target_kl": 0.02})
    assert cfg.lr == 1.0 and cfg.hidden == (32, 32) and cfg.target_kl == 0.02


# ---- the policy-gradient theorem and the estimators -----------------------------------------
def test_policy_gradient_theorem_on_a_toy_mdp():
    """Monte-Carlo estimators average to the exact gradient; an action-dependent baseline does not."""
    from simreal.algos.toy_mdp import check_theorem

    est = check_theorem(n_batches=100, batch_episodes=20, seed=0)["estimators"]
    for kind in ("total_return", "reward_to_go", "baseline"):
        assert est[kind]["error_in_stderrs"] < 3.0, (kind, est[kind])
        assert est[kind]["max_abs_z"] < 4.5, (kind, est[kind])
    assert est["action_baseline"]["error_in_stderrs"] > 5.0
    # each refinement removes variance: G_0 -> G_t -> G_t - V(s_t)
    assert est["baseline"]["trace_cov"] < est["reward_to_go"]["trace_cov"] < est["total_return"]["trace_cov"]


def test_estimator_weights_by_hand():
    from simreal.algos.common import Episode
    from simreal.algos.gradient_variance import psi

    class Lookup(torch.nn.Module):     # V(s) = first obs coordinate
        def forward(self, obs):
            return obs[..., :1]

    obs = torch.tensor([[1.0], [2.0], [3.0]])
    ep = Episode(obs, torch.zeros(3), torch.tensor([1.0, 1.0, 1.0]), False, torch.tensor([9.0]))
    v, gamma = Lookup(), 0.5
    # G = [1.75, 1.5, 1]
    assert torch.allclose(psi("total_return", ep, gamma), torch.tensor([1.75, 1.75, 1.75]))
    assert torch.allclose(psi("reward_to_go", ep, gamma), torch.tensor([1.75, 1.5, 1.0]))
    assert torch.allclose(psi("baseline", ep, gamma, v), torch.tensor([0.75, -0.5, -2.0]))
    # TD error: r + gamma V(s') - V(s), with V = 0 after the terminal step: [1+1-1, 1+1.5-2, 1-3]
    assert torch.allclose(psi("actor_critic_td", ep, gamma, v), torch.tensor([1.0, 0.5, -2.0]))
    # n-step (n=2): [1 + 0.5 + 0.25*V(s_2) - 1, 1 + 0.5*1 + 0 - 2, 1 - 3]; n=1 is the TD error
    assert torch.allclose(psi("actor_critic_nstep", ep, gamma, v, n_steps=2), torch.tensor([1.25, -0.5, -2.0]))
    assert torch.allclose(psi("actor_critic_nstep", ep, gamma, v, n_steps=1), psi("actor_critic_td", ep, gamma, v))
    # GAE with lambda = 1 is the baseline estimator again
    assert torch.allclose(psi("actor_critic_gae", ep, gamma, v, lam=1.0), psi("baseline", ep, gamma, v))
    # a truncated episode bootstraps from V(final obs) = 9: TD at the last step = 1 + 4.5 - 3
    trunc = Episode(obs, torch.zeros(3), torch.ones(3), True, torch.tensor([9.0]))
    assert float(psi("actor_critic_td", trunc, gamma, v)[-1]) == pytest.approx(2.5)


def test_reward_scaling_by_running_return_std():
    import gymnasium as gym

    from simreal.algos.api import make

    env = gym.make("CartPole-v1")
    agent = make("ppo_simreal", env.observation_space, env.action_space, {"norm_reward": True, "gamma": 0.5})
    ones, no = np.ones(1, np.float32), np.zeros(1, bool)
    out = [agent.scale_rewards(ones, no) for _ in range(3)]
    # running returns R = 1, 1.5, 1.75: after the third step their variance is 0.0972 (plus a
    # negligible prior of weight 1e-4), so the third reward becomes 1 / sqrt(0.0972)
    assert float(out[2][0]) == pytest.approx(1 / math.sqrt(np.var([1, 1.5, 1.75])), rel=1e-3)
    agent.scale_rewards(ones, np.ones(1, bool))
    assert agent.running_return[0] == 0.0          # an episode end restarts the return
    assert "return_norm" in agent.state_dict() and agent.state_dict()["return_norm"]["count"] > 4
