"""Read the deterministic actor of a trained policy (a torch module) into an `MLP` of arrays.

Supported: the modules `simreal.train.policy_module.deterministic_actor` returns for SB3 PPO and
SAC and sb3-contrib CrossQ (its batch renormalization folded into the Linear layers), `simreal.algos` agents' `actor_module()`, and a plain nn.Sequential of Linear + activation
layers (normalized obs -> action). Anything else is refused by name rather than guessed at; the
export's parity check (bundle.py) then compares the MLP with the torch module itself.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from simreal.bundle.numpy_mlp import MLP, Dense
from simreal.train.normalizer import Normalizer


class UnsupportedPolicy(TypeError):
    """The actor contains a layer the exported MLP cannot express."""


def _activation(m: nn.Module) -> tuple[str, float] | None:
    if isinstance(m, nn.Tanh):
        return "tanh", 0.0
    if isinstance(m, nn.ReLU):
        return "relu", 0.0
    if isinstance(m, nn.ELU):
        return "elu", float(m.alpha)
    if isinstance(m, nn.LeakyReLU):
        return "leaky_relu", float(m.negative_slope)
    return None


def _flat(modules) -> list[nn.Module]:
    out = []
    for m in modules:
        if isinstance(m, nn.Sequential):
            out += _flat(m)
        elif not isinstance(m, (nn.Identity, nn.Flatten)):
            out.append(m)
    return out


def _renorm_affine(m: nn.Module) -> tuple[np.ndarray, np.ndarray] | None:
    """Batch (re)normalization in eval mode as y = s * x + t, or None for other layers.
    sb3-contrib's BatchRenorm1d (CrossQ) normalizes with its running averages ra_mean/ra_var."""
    if type(m).__name__ != "BatchRenorm1d":
        return None
    mean, var = (getattr(m, k).detach().cpu().numpy().astype(np.float64) for k in ("ra_mean", "ra_var"))
    s = 1.0 / np.sqrt(var + float(m.eps))
    t = -mean * s
    if m.affine:
        g, b = (getattr(m, k).detach().cpu().numpy().astype(np.float64) for k in ("scale", "bias"))
        s, t = g * s, g * t + b
    return s, t


def dense_layers(modules, where: str) -> list[Dense]:
    """Linear [activation] Linear [activation] ... -> Dense layers. A batch renormalization
    (eval mode: an affine map) is folded into the Linear layer after it."""
    layers: list[Dense] = []
    pending: tuple[np.ndarray, np.ndarray] | None = None
    for m in _flat(modules):
        affine = _renorm_affine(m)
        if affine is not None:
            if pending is not None:
                affine = (pending[0] * affine[0], pending[1] * affine[0] + affine[1])
            pending = affine
            continue
        if isinstance(m, nn.Linear):
            w = m.weight.detach().cpu().numpy().astype(np.float64)
            b = (m.bias.detach().cpu().numpy().astype(np.float64) if m.bias is not None
                 else np.zeros(m.out_features))
            if pending is not None:               # W (s x + t) + b = (W s) x + (W t + b)
                w, b, pending = w * pending[0][None, :], w @ pending[1] + b, None
            layers.append(Dense(w.astype(np.float32), b.astype(np.float32), "identity"))
            continue
        if pending is not None:
            raise UnsupportedPolicy(f"{where}: a batch normalization must be followed by a Linear layer")
        act = _activation(m)
        if act is None:
            raise UnsupportedPolicy(f"{where}: layer {type(m).__name__} is not supported by the "
                                    f"exported MLP (Linear, Tanh, ReLU, ELU, LeakyReLU)")
        if not layers or layers[-1].activation != "identity":
            raise UnsupportedPolicy(f"{where}: activation {type(m).__name__} does not follow a "
                                    f"Linear layer")
        last = layers[-1]
        layers[-1] = Dense(last.weight, last.bias, act[0], act[1])
    if pending is not None:
        raise UnsupportedPolicy(f"{where}: a batch normalization must be followed by a Linear layer")
    if not layers:
        raise UnsupportedPolicy(f"{where}: no Linear layers")
    return layers


def _features(module: nn.Module, where: str) -> None:
    if type(module).__name__ != "FlattenExtractor":
        raise UnsupportedPolicy(f"{where}: features extractor {type(module).__name__} is not "
                                f"supported (only SB3's FlattenExtractor for flat observations)")


def _buffer(module: nn.Module, name: str) -> np.ndarray:
    return getattr(module, name).detach().cpu().numpy().astype(np.float32)


def mlp_from_actor(actor: nn.Module, normalizer: Normalizer | None = None) -> MLP:
    """The MLP computing `actor(normalizer.normalize_obs(obs))` from the raw observation.

    `normalizer` is the run's VecNormalize statistics (simreal.train.normalizer); agents of
    simreal.algos carry their own normalizer inside the actor instead.
    """
    from simreal.algos.common import DeterministicActor, GaussianPolicy, RunningMeanStd
    from simreal.train.policy_module import PPOActor, SACActor

    name = type(actor).__name__
    inner_norm = None
    if isinstance(actor, PPOActor):
        _features(actor.features, name)
        layers = dense_layers([actor.latent, actor.mean], name)
        if actor.squash:
            head = ("tanh", _buffer(actor.unscale, "low"), _buffer(actor.unscale, "high"))
        else:
            head = ("clip", _buffer(actor, "low"), _buffer(actor, "high"))
    elif isinstance(actor, SACActor):
        _features(actor.features, name)
        layers = dense_layers([actor.latent, actor.mu], name)
        head = ("tanh", _buffer(actor.unscale, "low"), _buffer(actor.unscale, "high"))
    elif isinstance(actor, DeterministicActor):
        if actor.discrete or not isinstance(actor.policy, GaussianPolicy):
            raise UnsupportedPolicy(f"{name}: only continuous (Gaussian) policies drive joints")
        layers = dense_layers([actor.policy.net], name)
        if actor.policy.state_dependent_std:    # the net outputs [mean, log_std]: keep the mean rows
            n, last = actor.policy.act_dim, layers[-1]
            layers[-1] = Dense(last.weight[:n].copy(), last.bias[:n].copy(), last.activation, last.alpha)
        head = ("clip", _buffer(actor, "low"), _buffer(actor, "high"))
        if isinstance(actor.obs_norm, RunningMeanStd):
            rms = actor.obs_norm
            inner_norm = dict(norm="standardize", norm_precision="float32",
                              obs_mean=rms.mean.detach().cpu().numpy().astype(np.float64),
                              obs_var=rms.var.detach().cpu().numpy().astype(np.float64),
                              epsilon=float(rms.eps), clip=float(rms.clip))
        elif not isinstance(actor.obs_norm, nn.Identity):
            raise UnsupportedPolicy(f"{name}: observation normalizer {type(actor.obs_norm).__name__}")
    elif isinstance(actor, nn.Sequential):
        layers = dense_layers(actor, name)
        n = layers[-1].weight.shape[0]
        head = ("clip", -np.ones(n, np.float32), np.ones(n, np.float32))
    else:
        raise UnsupportedPolicy(f"cannot export a {name}: expected the module of "
                                f"simreal.train.policy_module.deterministic_actor, an agent's "
                                f"actor_module(), or an nn.Sequential MLP")

    outer = normalizer is not None and normalizer.norm_obs
    if outer and inner_norm:
        raise UnsupportedPolicy(f"{name}: normalizes observations itself, and a normalizer with "
                                f"norm_obs=True was given too")
    if outer:
        norm = dict(norm="standardize", norm_precision="float64",
                    obs_mean=np.asarray(normalizer.obs_mean, np.float64),
                    obs_var=np.asarray(normalizer.obs_var, np.float64),
                    epsilon=float(normalizer.epsilon), clip=float(normalizer.clip_obs))
    else:
        norm = inner_norm or {}
    mlp = MLP(tuple(layers), head[0], head[1], head[2], **norm)
    if mlp.norm == "standardize" and mlp.obs_mean.shape != (mlp.obs_dim,):
        raise UnsupportedPolicy(f"normalizer has {mlp.obs_mean.shape[0]} entries, the network "
                                f"takes {mlp.obs_dim} inputs")
    return mlp


@torch.no_grad()
def reference_actions(actor: nn.Module, normalizer: Normalizer | None, obs: np.ndarray) -> np.ndarray:
    """The training-time policy on raw observations: actor(normalize(obs)), clipped to [-1, 1]
    as the env clips it. This is what parity is measured against."""
    x = normalizer.normalize_obs(obs) if normalizer is not None else np.asarray(obs, np.float32)
    a = actor(torch.as_tensor(np.asarray(x, np.float32))).cpu().numpy()
    return np.clip(a, -1.0, 1.0).astype(np.float32)
