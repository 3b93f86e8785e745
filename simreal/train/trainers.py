"""One interface over stable-baselines3 (PPO, SAC) and our own algorithms (simreal.algos).

A trainer owns the training envs and the learner, and knows how to checkpoint and restore them:
    restore(ckpt) -> state.json dict    write(dir, wall_time_s, full)    learn(total, hooks)
    init_weights(ckpt)  (a new run starting from another run's network and normalizer)
    act(normalized_obs) -> action       normalizer() -> Normalizer      num_timesteps, close()
`make_trainer` is the single place that dispatches on the algorithm name.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from simreal.train import sb3
from simreal.train.checkpoint import Checkpoint, CheckpointError
from simreal.train.config import SB3_PARAMS, TrainConfig
from simreal.train.evaluate import predictor
from simreal.train.normalizer import Normalizer


class SB3Trainer:
    def __init__(self, cfg: TrainConfig, seed_offset: int, tb_dir: Path | None):
        from stable_baselines3.common.logger import configure

        from simreal.train.envs import make_vec

        self.cfg = cfg
        # A resumed run offsets its env seeds by its progress so it does not replay old episodes.
        self.venv, self.vecnorm = make_vec(cfg, seed=cfg.seed + seed_offset)
        self.model = sb3.build_model(cfg, self.venv)
        if tb_dir is not None:
            self.model.set_logger(configure(str(tb_dir), ["tensorboard"]))

    @property
    def num_timesteps(self) -> int:
        return int(self.model.num_timesteps)

    def restore(self, ckpt: Checkpoint) -> dict[str, Any]:
        from simreal.train.snapshot import restore_snapshot

        return restore_snapshot(ckpt, self.model, self.vecnorm, self.cfg, training=True)

    def init_weights(self, ckpt: Checkpoint) -> None:
        """Network and observation statistics only: optimizer, counters and schedules start fresh."""
        sb3.read_tensors(self.model, ckpt.path, with_optimizer=False)
        Normalizer.load(ckpt.path / "normalizer.json").apply_to(self.vecnorm)

    def write(self, directory: Path, wall_time_s: float, full: bool) -> None:
        from simreal.train.snapshot import write_snapshot

        write_snapshot(directory, self.model, self.vecnorm, self.cfg, wall_time_s=wall_time_s,
                       include_optimizer=full,
                       include_buffer=full and self.cfg.checkpoint.replay_buffer)

    def scalar_writer(self):
        logger = self.model.logger

        def write(step: int, values: dict[str, float]) -> None:
            for k, v in values.items():
                logger.record(k, v)
            logger.dump(step)
        return write

    def learn(self, total: int, hooks) -> None:
        from simreal.train.callbacks import sb3_callback

        remaining = total - self.num_timesteps
        if remaining > 0:
            # reset_num_timesteps=False: SB3 adds num_timesteps, so the target stays `total` and
            # learning-rate schedules see the same progress as an uninterrupted run.
            self.model.learn(remaining, callback=sb3_callback(hooks), reset_num_timesteps=False,
                             log_interval=1 if self.cfg.algo == "ppo" else 10)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return predictor(self.model, self.cfg.eval.deterministic)(obs)

    def normalizer(self) -> Normalizer:
        return Normalizer.from_vec_normalize(self.vecnorm)

    def close(self) -> None:
        self.venv.close()


class OwnTrainer:
    """simreal.algos agents. Their observation normalizer lives inside the agent (and inside
    `actor_module()`), so this trainer's normalizer.json is the identity."""

    def __init__(self, cfg: TrainConfig, seed_offset: int, tb_dir: Path | None):
        from simreal.algos import api
        from simreal.algos.common import EnvBatch, seed_everything

        from simreal.train.envs import make_single

        self.cfg, self.api = cfg, api
        hp = cfg.hyperparams.model_dump()
        self.envs = [make_single(cfg.robot, cfg.env.randomize, dict(cfg.env.kwargs))
                     for _ in range(cfg.n_envs)]
        self.batch = EnvBatch(self.envs)
        seed_everything(cfg.seed + seed_offset)
        self.agent = api.make(cfg.algo, self.batch.observation_space, self.batch.action_space, hp)
        self.seed_offset = seed_offset
        self.writer = None
        if tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(tb_dir))

    @property
    def num_timesteps(self) -> int:
        return int(self.agent.counters["timesteps"])

    def restore(self, ckpt: Checkpoint) -> dict[str, Any]:
        from simreal.train.snapshot import read_state

        state = read_state(ckpt)
        if state["config_sha256"] != self.cfg.sha256():
            raise CheckpointError(f"{ckpt.path}: saved with a different configuration")
        self.agent.load_state_dict(sb3.load_pt(ckpt.path / "agent.pt"))
        return state

    def init_weights(self, ckpt: Checkpoint) -> None:
        self.agent.load_weights(sb3.load_pt(ckpt.path / "agent.pt"))

    def write(self, directory: Path, wall_time_s: float, full: bool) -> None:
        import torch

        from simreal.train.snapshot import STATE_FORMAT

        torch.save(self.agent.state_dict(), directory / "agent.pt")
        (directory / "normalizer.json").write_text(Normalizer().to_json())
        c = self.agent.counters
        state = {"format": STATE_FORMAT, "num_timesteps": int(c["timesteps"]),
                 "n_updates": int(c.get("updates", 0)), "episode_num": int(c.get("episodes", 0)),
                 "wall_time_s": wall_time_s, "config_sha256": self.cfg.sha256(),
                 "algo": self.cfg.algo, "robot": self.cfg.robot, "seed": self.cfg.seed,
                 "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (directory / "state.json").write_text(json.dumps(state, indent=1))

    def scalar_writer(self):
        def write(step: int, values: dict[str, float]) -> None:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)
        return write if self.writer is not None else None

    def learn(self, total: int, hooks) -> None:
        envs = self.envs

        def callback(record: dict) -> bool:
            step = int(record["timesteps"])
            if record.get("event") == "episode":
                return hooks.on_step(step, [{"episode_stats": envs[record["env"]].last_stats}])
            if record.get("event") == "update":
                if self.writer is not None:
                    for k, v in record.items():
                        if k not in ("event", "timesteps") and isinstance(v, (int, float)):
                            self.writer.add_scalar(f"train/{k}", v, step)
                hooks.on_safe_point(step)
                return not hooks.should_stop()
            return True

        self.batch.reset(seed=self.cfg.seed + self.num_timesteps)
        self.api.ALGOS[self.cfg.algo].train(self.agent, self.batch, total, callback)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return predictor(self.agent, self.cfg.eval.deterministic)(obs)

    def normalizer(self) -> Normalizer:
        return Normalizer()

    def close(self) -> None:
        for env in self.envs:
            env.close()
        if self.writer is not None:
            self.writer.close()


def make_trainer(cfg: TrainConfig, seed_offset: int = 0, tb_dir: Path | None = None):
    if cfg.algo in SB3_PARAMS:
        return SB3Trainer(cfg, seed_offset, tb_dir)
    return OwnTrainer(cfg, seed_offset, tb_dir)
