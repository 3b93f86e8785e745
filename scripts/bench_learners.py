"""What the learners cost per sample; writes the "learners" section of BENCHMARKS.md.

    python scripts/bench_learners.py                      # quadruped, 3 interleaved rounds
    python scripts/bench_learners.py --robot biped --steps 1500

PPO with the robot's shipped config (configs/<robot>/ppo.yaml: the batched env): time per sample
of collecting a rollout (env + policy forward + buffer) and of the update (all epochs), against
the same PPO on 4 single envs in a DummyVecEnv, 512 steps each (the same 2,048 samples per update).

Off-policy: environment steps per second of `model.learn` once past `learning_starts` (the
buffer is filled first, outside the timing), side by side in interleaved rounds, for:

* stock SB3 SAC: one env (DummyVecEnv), batch 256, one gradient step per env step: the baseline;
* sb3-contrib CrossQ in the same set-up (its default: one update per step, no target network);
* SAC and CrossQ on the batched env (simreal.train.vec_env): N envs per call, `gradient_steps`
  updates per call, so fewer updates per env step (the update-to-data ratio is in the table).

Throughput only: sample efficiency (return per env step) needs training runs of each row
(scripts/bench_training.py), which are not part of this script.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))
from _bench_md import command_line, machine_line, publish  # noqa: E402

SECTION = "learners"
# name -> (algo, n_envs (0: single env in DummyVecEnv), gradient_steps per vec step)
ROWS = {
    "SAC, 1 env, 1 update/step (stock)": ("sac", 0, 1),
    "CrossQ, 1 env, 1 update/step": ("crossq", 0, 1),
    "SAC, batched x16, 2 updates/call": ("sac", 16, 2),
    "CrossQ, batched x16, 2 updates/call": ("crossq", 16, 2),
}


def build(robot: str, algo: str, n_envs: int, gradient_steps: int, threads: int):
    import torch
    from stable_baselines3.common.vec_env import VecNormalize

    from simreal.train.config import TrainConfig
    from simreal.train.envs import make_vec
    from simreal.train.sb3 import build_model

    torch.set_num_threads(threads)
    cfg = TrainConfig(robot=robot, algo=algo, n_envs=max(1, n_envs), torch_threads=threads,
                      env={"vec_env": "batched" if n_envs else "dummy"},
                      hyperparams={"learning_starts": 1000, "batch_size": 256, "buffer_size": 200_000,
                                   "gradient_steps": gradient_steps})
    venv, _ = make_vec(cfg, seed=0)
    assert isinstance(venv, VecNormalize)
    model = build_model(cfg, venv)
    model.learn(1000 + 256, reset_num_timesteps=True)       # fill past learning_starts, warm up
    return model, venv


def ppo(robot: str, vec_env: str, n_envs: int | None, n_steps: int | None = None):
    """PPO as `simreal train ROBOT --algo ppo` builds it, optionally on another VecEnv."""
    from simreal.train.config import resolve, parse_set
    from simreal.train.envs import make_vec
    from simreal.train.sb3 import build_model

    sets = [f"env.vec_env={vec_env}"] + ([f"n_envs={n_envs}"] if n_envs else []) + \
        ([f"hyperparams.n_steps={n_steps}"] if n_steps else [])
    cfg = resolve(robot, "ppo", [("--set", parse_set(sets))])
    venv, _ = make_vec(cfg, seed=0)
    model = build_model(cfg, venv)
    _, callback = model._setup_learn(10 ** 9, callback=None)
    return model, venv, callback


def ppo_split(model, callback) -> tuple[float, float]:
    """(collect, update) microseconds per sample of one PPO iteration."""
    n = model.n_steps * model.n_envs
    t0 = time.perf_counter()
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    t1 = time.perf_counter()
    model.train()
    t2 = time.perf_counter()
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6


def rate(model, steps: int) -> float:
    t0, n0 = time.perf_counter(), model.num_timesteps
    model.learn(steps, reset_num_timesteps=False)
    return (model.num_timesteps - n0) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    import os

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--robot", default="quadruped")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=1000, help="env steps timed per row and round")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)                      # as the shipped PPO configs train
    ppos = {"PPO, shipped config (batched env)": ppo(args.robot, "auto", None),
            "PPO, DummyVecEnv x4 x 512 steps (same update size)": ppo(args.robot, "dummy", 4, 512)}
    split: dict[str, list[tuple[float, float]]] = {name: [] for name in ppos}
    for r in range(args.rounds):
        for name, (model, _, cb) in ppos.items():
            split[name].append(ppo_split(model, cb))
            print(f"[round {r + 1}] {name}: collect {split[name][-1][0]:.0f} us, update "
                  f"{split[name][-1][1]:.0f} us per sample", file=sys.stderr, flush=True)
    for _, venv, _ in ppos.values():
        venv.close()
    models = {name: build(args.robot, algo, n, g, args.threads) for name, (algo, n, g) in ROWS.items()}
    rates: dict[str, list[float]] = {name: [] for name in ROWS}
    for r in range(args.rounds):
        for name, (model, _) in models.items():
            rates[name].append(rate(model, args.steps))
            print(f"[round {r + 1}] {name}: {rates[name][-1]:,.0f} steps/s", file=sys.stderr, flush=True)
    for _, venv in models.values():
        venv.close()
    base = statistics.median(rates["SAC, 1 env, 1 update/step (stock)"])
    lines = ["## Learners", "", machine_line(command_line("bench_learners.py", argv)), "",
             f"**PPO** ({args.robot}, one torch thread; median of {args.rounds} iterations): microseconds "
             "per sample.", "", "| set-up | samples per update | collect | update | total | samples/s |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, (model, _, _) in ppos.items():
        c = statistics.median(s[0] for s in split[name])
        u = statistics.median(s[1] for s in split[name])
        lines.append(f"| {name} | {model.n_steps * model.n_envs:,} | {c:.0f} | {u:.0f} | {c + u:.0f} "
                     f"| {1e6 / (c + u):,.0f} |")
    lines += ["", f"**Off-policy** ({args.robot}; median of {args.rounds} interleaved rounds of {args.steps:,} env steps past "
             f"learning_starts; batch 256, [256, 256] networks (CrossQ: its default wide critic), "
             f"{args.threads} torch threads).", "",
             "| learner | env steps/s | x stock SAC | updates per env step |", "|---|---:|---:|---:|"]
    for name, (algo, n, g) in ROWS.items():
        v = statistics.median(rates[name])
        lines.append(f"| {name} | {v:,.0f} | {v / base:.1f} | {g / max(1, n):.3g} |")
    lines += ["", "Throughput only; the rows with fewer updates per env step need their own training runs "
              "to show equal sample efficiency."]
    publish(SECTION, "\n".join(lines), write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
