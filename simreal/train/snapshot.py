"""What goes into a checkpoint of a training run, and loading a run back for eval or export.

A checkpoint folder (see checkpoint.py for how it is written and verified):
  policy.pt, optimizer.pt, replay_buffer.npz (SAC)    see sb3.py
  normalizer.json                                     see normalizer.py
  state.json   counters (num_timesteps, n_updates, episode_num), wall_time_s, config_sha256,
               algo, robot, seed
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simreal.train import sb3
from simreal.train.checkpoint import Checkpoint, CheckpointError, CheckpointStore, verify
from simreal.train.config import TrainConfig, load_resolved
from simreal.train.layout import RunPaths
from simreal.train.normalizer import Normalizer
from simreal.train.sb3 import UntrustedContentError

STATE_FORMAT = "simreal-train-state/1"


def write_snapshot(directory: Path, model, vecnorm, cfg: TrainConfig, *, wall_time_s: float,
                   include_optimizer: bool = True, include_buffer: bool = False) -> None:
    """Files of one checkpoint into `directory` (a CheckpointStore temp folder)."""
    sb3.write_tensors(model, directory)
    if not include_optimizer:
        (directory / "optimizer.pt").unlink()
    (directory / "normalizer.json").write_text(Normalizer.from_vec_normalize(vecnorm).to_json())
    if include_buffer and getattr(model, "replay_buffer", None) is not None:
        sb3.write_replay_buffer(model, directory)
    state = {"format": STATE_FORMAT, **sb3.counters(model), "wall_time_s": wall_time_s,
             "config_sha256": cfg.sha256(), "algo": cfg.algo, "robot": cfg.robot,
             "seed": cfg.seed, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (directory / "state.json").write_text(json.dumps(state, indent=1))


def read_state(ckpt: Checkpoint) -> dict[str, Any]:
    state = json.loads((ckpt.path / "state.json").read_text())
    if state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{ckpt.path / 'state.json'}: not a {STATE_FORMAT} file")
    return state


def restore_snapshot(ckpt: Checkpoint, model, vecnorm, cfg: TrainConfig, *,
                     training: bool = True) -> dict[str, Any]:
    """Load a verified checkpoint into a model built from `cfg`; returns its state.json."""
    state = read_state(ckpt)
    if state["config_sha256"] != cfg.sha256():
        raise CheckpointError(f"{ckpt.path}: saved with a different configuration than this run's "
                              f"config.yaml (config_sha256 differs); was config.yaml edited?")
    sb3.read_tensors(model, ckpt.path, with_optimizer=training)
    Normalizer.load(ckpt.path / "normalizer.json").apply_to(vecnorm)
    if training:
        sb3.restore_counters(model, state)
        buf = ckpt.path / "replay_buffer.npz"
        if getattr(model, "replay_buffer", None) is not None:
            if buf.is_file():
                sb3.read_replay_buffer(model, buf)
            else:
                warnings.warn(f"{ckpt.path}: no replay buffer saved; SAC resumes with an empty one",
                              stacklevel=2)
    return state


def check_init_source(ckpt: Checkpoint, cfg: TrainConfig) -> dict[str, Any]:
    """A checkpoint a new run may start its weights from: same robot, algorithm and network.

    Hyperparameters, reward and randomization may differ (that is the point of fine-tuning);
    returns the source's state.json for the run's provenance.
    """
    state = read_state(ckpt)
    for key in ("robot", "algo"):
        if state.get(key) != getattr(cfg, key):
            raise CheckpointError(f"{ckpt.path}: --init-from needs the same {key}; the checkpoint "
                                  f"has {state.get(key)!r}, this run {getattr(cfg, key)!r}")
    source_cfg = RunPaths(ckpt.path.parents[1]).config    # <run>/checkpoints|best/step_N
    if source_cfg.is_file():
        src = load_resolved(source_cfg)
        if src.policy != cfg.policy:
            raise CheckpointError(f"{ckpt.path}: --init-from needs the same network (policy: "
                                  f"{src.policy.model_dump(exclude_none=True)} in {source_cfg}, "
                                  f"{cfg.policy.model_dump(exclude_none=True)} here)")
    seen = len(Normalizer.load(ckpt.path / "normalizer.json").obs_mean)
    if seen:   # observation statistics saved: their size is the network's input size
        from simreal.train.envs import make_single

        env = make_single(cfg.robot, False, {})
        size = int(np.prod(env.observation_space.shape))
        env.close()
        if seen != size:
            raise CheckpointError(f"{ckpt.path}: --init-from needs the same observation; the "
                                  f"checkpoint's has {seen} values, {cfg.robot}'s now has {size} "
                                  f"(robot.yaml `observation` changed since?)")
    return state


# ---- loading a finished (or running) run for eval/export ---------------------------------------
@dataclass
class LoadedRun:
    config: TrainConfig
    model: Any                  # SB3 PPO/SAC (or one of our agents)
    normalizer: Normalizer
    source: Path                # the checkpoint folder (or file) the weights came from
    step: int


def find_checkpoint(run_dir: Path, which: str = "auto") -> Checkpoint:
    """'best', 'latest', 'auto' (best if it verifies, else latest) or a checkpoint folder path."""
    paths = RunPaths(Path(run_dir))
    latest, best = CheckpointStore(paths.checkpoints), CheckpointStore(paths.best)
    if which == "latest":
        return latest.latest_valid()
    if which == "best":
        return best.latest_valid()
    if which == "auto":
        try:
            return best.latest_valid()
        except CheckpointError:
            return latest.latest_valid()
    return verify(Path(which))


def _refuse_pickle(path: Path, trust: bool) -> None:
    if not trust:
        raise UntrustedContentError(
            f"{path}: this is a pickle-based file (stable-baselines3 .zip / .pkl); loading it can run "
            f"arbitrary code. Pass --trust-checkpoint only if you made it yourself or trust its "
            f"author.")


def load_run(run_dir: Path, checkpoint: str = "auto", trust: bool = False) -> LoadedRun:
    """Config, policy and normalizer of a run directory, with verified, pickle-free loading.

    `run_dir` may also be an SB3 .zip (loaded only with trust=True, config from config.yaml
    beside it).
    """
    from simreal.train.envs import make_vec

    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.suffix in (".zip", ".pkl"):
        return _load_sb3_zip(run_dir, trust)
    paths = RunPaths(run_dir)
    if not paths.config.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg = load_resolved(paths.config)
    try:
        ckpt = find_checkpoint(run_dir, checkpoint)
    except CheckpointError:
        zips = sorted(run_dir.glob("*.zip"))
        if zips and checkpoint in ("auto", "latest"):
            return _load_sb3_zip(zips[0], trust)
        raise
    if (ckpt.path / "agent.pt").is_file():       # one of our own algorithms (simreal.algos)
        return LoadedRun(cfg, _load_agent(cfg, ckpt), Normalizer.load(ckpt.path / "normalizer.json"),
                         ckpt.path, ckpt.step)
    venv, vecnorm = make_vec(cfg.model_copy(update={"env": cfg.env.model_copy(
        update={"vec_env": "dummy"})}), seed=cfg.seed, n_envs=1)
    model = sb3.build_model(cfg, venv, for_inference=True)
    restore_snapshot(ckpt, model, vecnorm, cfg, training=False)
    venv.close()
    return LoadedRun(cfg, model, Normalizer.load(ckpt.path / "normalizer.json"), ckpt.path, ckpt.step)


def _load_agent(cfg: TrainConfig, ckpt: Checkpoint):
    from simreal.algos import api

    from simreal.train.envs import make_single

    env = make_single(cfg.robot, False, dict(cfg.env.kwargs))
    agent = api.make(cfg.algo, env.observation_space, env.action_space, cfg.hyperparams.model_dump())
    env.close()
    agent.load_state_dict(sb3.load_pt(ckpt.path / "agent.pt"))
    return agent


def _load_sb3_zip(path: Path, trust: bool) -> LoadedRun:
    _refuse_pickle(path, trust)
    cfg_path = path.parent / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path}: needs a simreal config.yaml beside it (robot, algo, env)")
    cfg = load_resolved(cfg_path)
    model = sb3.algo_class(cfg.algo).load(str(path), device=cfg.device)
    normalizer = Normalizer()
    for pkl in (path.parent / "vecnormalize.pkl", path.with_suffix(".pkl")):
        if pkl.is_file():
            import pickle

            with open(pkl, "rb") as f:
                normalizer = Normalizer.from_vec_normalize(pickle.load(f))  # trusted by the user
            break
    return LoadedRun(cfg, model, normalizer, path, int(model.num_timesteps))
