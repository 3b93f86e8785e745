"""The deterministic policy as a plain torch module, for export and for fast evaluation.

Input: the *normalized* observation (see simreal.train.normalizer), shape (batch, obs_dim).
Output: the action in the env's action-space units, clipped to its bounds, the same action
`model.predict(obs, deterministic=True)` returns. The robot envs' action space is [-1, 1].
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class _Unscale(nn.Module):
    """[-1, 1] -> [low, high]: low + (a + 1) / 2 * (high - low)."""

    def __init__(self, low, high):
        super().__init__()
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.low + (a + 1.0) * 0.5 * (self.high - self.low)


class PPOActor(nn.Module):
    """features -> mlp_extractor.policy_net -> action_net (the Gaussian mean) -> clip."""

    def __init__(self, policy, low, high):
        super().__init__()
        self.features = copy.deepcopy(policy.pi_features_extractor)
        self.latent = copy.deepcopy(policy.mlp_extractor.policy_net)
        self.mean = copy.deepcopy(policy.action_net)
        self.squash = bool(policy.squash_output)
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))
        self.unscale = _Unscale(low, high)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        a = self.mean(self.latent(self.features(obs.float())))
        if self.squash:  # gSDE with squashing: tanh then rescale, as SB3 does
            return self.unscale(torch.tanh(a))
        return torch.maximum(torch.minimum(a, self.high), self.low)


class SACActor(nn.Module):
    """features -> latent_pi -> mu -> tanh (the mode of the squashed Gaussian) -> rescale."""

    def __init__(self, actor, low, high):
        super().__init__()
        self.features = copy.deepcopy(actor.features_extractor)
        self.latent = copy.deepcopy(actor.latent_pi)
        self.mu = copy.deepcopy(actor.mu)
        self.unscale = _Unscale(low, high)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.unscale(torch.tanh(self.mu(self.latent(self.features(obs.float())))))


def deterministic_actor(model) -> nn.Module:
    """An eval-mode copy of the policy's deterministic path (SB3 PPO/SAC, sb3-contrib CrossQ, or
    an agent of ours)."""
    if hasattr(model, "actor_module"):          # simreal.algos agents build their own
        return model.actor_module().eval()
    space = model.action_space
    low, high = space.low, space.high
    name = type(model).__name__
    if name == "PPO":
        module = PPOActor(model.policy, low, high)
    elif name in ("SAC", "CrossQ"):            # CrossQ's actor: SAC's, with batch renormalization
        module = SACActor(model.actor, low, high)
    else:
        raise TypeError(f"no deterministic actor for {name}")
    return module.eval()
