"""stable-baselines3 PPO/SAC and sb3-contrib CrossQ: building a model from a TrainConfig and its checkpoint contents.

What a checkpoint holds for an SB3 model (nothing here needs unpickling of arbitrary objects):
  policy.pt          {"state_dicts": {"policy": ...}, "variables": {"log_ent_coef": ...}}
  optimizer.pt       {"state_dicts": {"policy.optimizer" | "actor.optimizer" | ...}, "torch_rng"}
  replay_buffer.npz  SAC: observations, next_observations, actions, rewards, dones, timeouts, pos, full
The .pt files are written with torch.save and read with torch.load(weights_only=True), which only
rebuilds tensors and plain containers; the .npz is read with allow_pickle=False.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from simreal.train.config import OffPolicyParams, PPOParams, TrainConfig, schedule
from simreal.errors import UserError

ACTIVATIONS = {"tanh": "Tanh", "relu": "ReLU", "elu": "ELU", "leaky_relu": "LeakyReLU"}
BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def algo_class(algo: str):
    if algo == "crossq":
        try:
            from sb3_contrib import CrossQ
        except ImportError:
            raise UserError("--algo crossq needs sb3-contrib: pip install 'simreal[train]'") from None
        return CrossQ
    from stable_baselines3 import PPO, SAC

    return {"ppo": PPO, "sac": SAC}[algo]


def policy_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    p = cfg.policy
    kw: dict[str, Any] = {}
    if p.activation is not None:
        kw["activation_fn"] = getattr(torch.nn, ACTIVATIONS[p.activation])
    for name in ("net_arch", "log_std_init", "ortho_init", "n_critics"):
        value = getattr(p, name)
        if value is not None:
            kw[name] = value
    return kw


def model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    hp = cfg.hyperparams.model_dump()
    hp["learning_rate"] = schedule(hp["learning_rate"])
    if isinstance(cfg.hyperparams, PPOParams):
        hp["clip_range"] = schedule(hp["clip_range"])
    return hp


def build_model(cfg: TrainConfig, venv, *, for_inference: bool = False, seed: int | None = None):
    """A fresh PPO/SAC for `venv`; `for_inference` skips the replay buffer allocation."""
    kw = model_kwargs(cfg)
    if for_inference and isinstance(cfg.hyperparams, OffPolicyParams):
        kw["buffer_size"] = max(1, cfg.hyperparams.batch_size)
    return algo_class(cfg.algo)("MlpPolicy", venv, policy_kwargs=policy_kwargs(cfg),
                                seed=cfg.seed if seed is None else seed, device=cfg.device,
                                verbose=0, **kw)


def _split_params(model) -> tuple[list[str], list[str]]:
    state_dicts, variables = model._get_torch_save_params()
    return list(state_dicts), list(variables)


def _get(model, dotted: str):
    obj = model
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def write_tensors(model, directory: Path) -> None:
    names, variables = _split_params(model)
    policy = {n: _get(model, n).state_dict() for n in names if "optimizer" not in n}
    optim = {n: _get(model, n).state_dict() for n in names if "optimizer" in n}
    torch.save({"state_dicts": policy,
                "variables": {v: _get(model, v).detach().clone() for v in variables}},
               directory / "policy.pt")
    torch.save({"state_dicts": optim, "torch_rng": torch.get_rng_state()}, directory / "optimizer.pt")


def load_pt(path: Path) -> dict:
    """torch.load restricted to tensors and plain containers; a pickle payload is refused."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UntrustedContentError(
            f"{path}: refusing to load: it needs unpickling of arbitrary objects, which can run "
            f"code ({str(e).splitlines()[0]})") from None


class UntrustedContentError(UserError, RuntimeError):
    """A file would need arbitrary unpickling; refused unless the user opts in."""


def read_tensors(model, directory: Path, *, with_optimizer: bool = True) -> None:
    names, variables = _split_params(model)
    pol = load_pt(directory / "policy.pt")
    for n in names:
        if "optimizer" not in n:
            _get(model, n).load_state_dict(pol["state_dicts"][n])
    with torch.no_grad():
        for v in variables:
            _get(model, v).copy_(pol["variables"][v])   # in place: optimizers hold this tensor
    if with_optimizer and (directory / "optimizer.pt").is_file():
        opt = load_pt(directory / "optimizer.pt")
        for n in names:
            if "optimizer" in n:
                _get(model, n).load_state_dict(opt["state_dicts"][n])
        if "torch_rng" in opt:
            torch.set_rng_state(opt["torch_rng"])


def write_replay_buffer(model, directory: Path) -> None:
    buf = model.replay_buffer
    n = buf.buffer_size if buf.full else buf.pos
    arrays = {k: getattr(buf, k)[:n] for k in BUFFER_ARRAYS if getattr(buf, k, None) is not None}
    with open(directory / "replay_buffer.npz", "wb") as f:
        np.savez(f, pos=np.int64(buf.pos), full=np.bool_(buf.full), **arrays)


def read_replay_buffer(model, path: Path) -> None:
    buf = model.replay_buffer
    with np.load(path, allow_pickle=False) as z:
        pos, full = int(z["pos"]), bool(z["full"])
        n = buf.buffer_size if full else pos
        for k in BUFFER_ARRAYS:
            dest = getattr(buf, k, None)
            if dest is None:
                continue
            src = z[k]
            if src.shape[0] != n or src.shape[1:] != dest.shape[1:] or n > dest.shape[0]:
                raise ValueError(f"{path}: {k} has shape {src.shape}, the configured buffer holds "
                                 f"{dest.shape} (buffer_size or n_envs changed?)")
            dest[:n] = src
    buf.pos, buf.full = pos % buf.buffer_size, full


def counters(model) -> dict[str, int]:
    return {"num_timesteps": int(model.num_timesteps), "n_updates": int(model._n_updates),
            "episode_num": int(model._episode_num)}


def restore_counters(model, state: dict) -> None:
    model.num_timesteps = int(state["num_timesteps"])
    model._n_updates = int(state.get("n_updates", 0))
    model._episode_num = int(state.get("episode_num", 0))
