"""Environment throughput against the physics ceiling; writes the "env_speed" section of BENCHMARKS.md.

    python scripts/bench_env.py                 # both robots, 3 interleaved rounds
    python scripts/bench_env.py --robots quadruped --rounds 5 --seconds 2

Every row is control steps per second (one step = one policy action for one env = `substeps`
physics steps), all driven by the same seeded random actions (0.3 x uniform in [-1, 1]) so the
contact load is alike. Rows are measured in interleaved rounds (each config once per round, the
median kept) because these machines are shared and noisy:

* ceiling, 1 thread: raw `mujoco.mj_step(model, data, substeps)` on the robot's model, one data
  per env in a Python loop (no observation, reward or noise);
* batched ceiling: `mujoco.rollout.Rollout(nthread=T)` stepping the same batch, state carried
  from call to call (physics only), and the same batch on T threads of `mj_step` (what the
  batched env's physics costs);
* the batched env (`simreal.envs.batched.LocomotionBatch`) at several batch sizes and threads, and
  the share of its step spent in its own physics call (the ceiling of its own randomized models
  and states, which differ in contact load from the nominal ones above);
* the single env (`LocomotionEnv`) in SB3's `DummyVecEnv` x4 and `SubprocVecEnv` x2;
* Gymnasium's `Ant-v5` (one env), an outside reference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))
from _bench_md import command_line, machine_line, publish  # noqa: E402

SECTION = "env_speed"
BATCHES = ((16, 2), (32, 1), (32, 2), (64, 2))        # (envs, threads) of the batched env
CEILING_BATCH = 32


def actions(n: int, n_joints: int, seed: int = 0) -> np.ndarray:
    return 0.3 * np.random.default_rng(seed).uniform(-1, 1, (256, n, n_joints))


def timed(step, seconds: float) -> float:
    """Calls step(k) for about `seconds`; returns calls per second."""
    step(0)                                             # warm up
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        k += 1
        step(k)
    return k / (time.perf_counter() - t0)


# --- physics ceilings -----------------------------------------------------------------------------
class Physics:
    """n copies of the robot's model and data, driven by targets from the random actions."""

    def __init__(self, robot: str, n: int):
        import mujoco

        from simreal.envs.physics import Simulator
        from simreal.robot.spec import load_robot

        self.mujoco = mujoco
        spec = load_robot(robot)
        self.sims = [Simulator(spec) for _ in range(n)]
        for s in self.sims:
            s.reset()
        self.spec, self.n = spec, n
        self.acts = actions(n, spec.n_joints)

    def ctrl(self, k: int) -> np.ndarray:
        return self.spec.default_pose + self.spec.control.action_scale * self.acts[k % len(self.acts)]

    def fallen_reset(self) -> None:
        for s in self.sims:
            if s.tilt() > 1.0:
                s.reset()

    def loop(self, k: int) -> None:
        c = self.ctrl(k)
        for i, s in enumerate(self.sims):
            s.data.ctrl[s.act_idx] = c[i]
            self.mujoco.mj_step(s.model, s.data, s.substeps)
        if k % 50 == 0:
            self.fallen_reset()


def threaded(phys: Physics, threads: int):
    pool = ThreadPoolExecutor(max(1, threads - 1))
    mj = phys.mujoco

    def work(rows, c):
        for i in rows:
            s = phys.sims[i]
            s.data.ctrl[s.act_idx] = c[i]
            mj.mj_step(s.model, s.data, s.substeps)

    def step(k):
        c = phys.ctrl(k)
        rows = iter(range(phys.n))         # shared: each thread takes the next row, as the batched env does
        futures = [pool.submit(work, rows, c) for _ in range(threads - 1)]
        work(rows, c)                      # this thread takes rows too
        for f in futures:
            f.result()
        if k % 50 == 0:
            phys.fallen_reset()
    return step, pool


def rollout(phys: Physics, threads: int):
    from mujoco import rollout as mj_rollout

    mj = phys.mujoco
    sims = phys.sims
    m0 = sims[0].model
    kind = mj.mjtState.mjSTATE_FULLPHYSICS
    size = mj.mj_stateSize(m0, kind)
    state = np.zeros((phys.n, size))
    for i, s in enumerate(sims):
        mj.mj_getState(s.model, s.data, state[i], kind)
    ss = sims[0].substeps
    out_state = np.zeros((phys.n, ss, size))
    out_sensor = np.zeros((phys.n, ss, m0.nsensordata))
    control = np.zeros((phys.n, ss, m0.nu))
    roller = mj_rollout.Rollout(nthread=threads)
    datas = [mj.MjData(m0) for _ in range(threads)]
    models = [s.model for s in sims]
    act = sims[0].act_idx

    def step(k):
        control[:, :, act] = phys.ctrl(k)[:, None, :]
        roller.rollout(models, datas, state, control, nstep=ss, state=out_state, sensordata=out_sensor,
                       skip_checks=True)
        state[:] = out_state[:, -1]
    return step, roller


# --- environments -------------------------------------------------------------------------------
def batched_env(robot: str, n: int, threads: int):
    from simreal.envs.batched import LocomotionBatch

    b = LocomotionBatch(n, robot, threads=threads)
    b.reset(list(range(n)))
    acts = actions(n, b.spec.n_joints)
    return (lambda k: b.step(acts[k % len(acts)])), b


def physics_share(robot: str, n: int, threads: int, steps: int = 300, rounds: int = 3) -> float:
    """The fraction of the batched env's step spent in its physics call (median of rounds)."""
    from simreal.envs.batched import LocomotionBatch

    b = LocomotionBatch(n, robot, threads=threads)
    b.reset(list(range(n)))
    acts = actions(n, b.spec.n_joints)
    physics, spent = b._step_physics, [0.0]

    def timed_physics():
        t = time.perf_counter()
        physics()
        spent[0] += time.perf_counter() - t
    b._step_physics = timed_physics
    shares = []
    for _ in range(rounds):
        spent[0], t0 = 0.0, time.perf_counter()
        for k in range(steps):
            b.step(acts[k % len(acts)])
        shares.append(spent[0] / (time.perf_counter() - t0))
    b.close()
    return statistics.median(shares)


def sb3_vec(robot: str, kind: str, n: int):
    import functools

    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from simreal.train.envs import _make_monitored

    factory = functools.partial(_make_monitored, robot, True, {})
    venv = (SubprocVecEnv([functools.partial(factory, worker=True)] * n) if kind == "subproc"
            else DummyVecEnv([factory] * n))
    venv.seed(0)
    venv.reset()
    acts = actions(n, venv.action_space.shape[0]).astype(np.float32)
    return (lambda k: venv.step(acts[k % len(acts)])), venv


def ant():
    import gymnasium as gym

    env = gym.make("Ant-v5")
    env.reset(seed=0)
    acts = actions(1, env.action_space.shape[0])[:, 0]

    def step(k):
        _, _, term, trunc, _ = env.step(acts[k % len(acts)])
        if term or trunc:
            env.reset()
    return step, env


def configs(robot: str, threads: int) -> dict[str, tuple]:
    """name -> (factory returning (step, closeable), env steps per call)."""
    out: dict[str, tuple] = {
        "ceiling: mj_step, 1 thread": (lambda: (Physics(robot, CEILING_BATCH).loop, None), CEILING_BATCH),
        f"batched ceiling: mujoco.rollout, {threads} threads":
            (lambda: rollout(Physics(robot, CEILING_BATCH), threads), CEILING_BATCH),
        f"batched ceiling: mj_step on {threads} threads":
            (lambda: threaded(Physics(robot, CEILING_BATCH), threads), CEILING_BATCH),
    }
    for n, t in BATCHES:
        t = min(t, threads)
        out[f"batched env x{n}, {t} thread{'s' * (t > 1)}"] = (lambda n=n, t=t: batched_env(robot, n, t), n)
    out["single env, DummyVecEnv x4"] = (lambda: sb3_vec(robot, "dummy", 4), 4)
    out["single env, SubprocVecEnv x2"] = (lambda: sb3_vec(robot, "subproc", 2), 2)
    return out


def close(obj) -> None:
    if obj is None:
        return
    for name in ("close", "shutdown"):
        if hasattr(obj, name):
            getattr(obj, name)()
            return
    if hasattr(obj, "__exit__"):
        obj.__exit__(None, None, None)


def measure(robot: str, rounds: int, seconds: float, threads: int) -> dict[str, float]:
    cfgs = configs(robot, threads)
    built = {name: (factory(), per) for name, (factory, per) in cfgs.items()}
    rates: dict[str, list[float]] = {name: [] for name in cfgs}
    for r in range(rounds):
        for name, ((step, _), per) in built.items():
            rates[name].append(per * timed(step, seconds))
            print(f"[{robot} round {r + 1}] {name}: {rates[name][-1]:,.0f}", file=sys.stderr, flush=True)
    for (_, obj), _ in built.values():
        close(obj)
    return {name: statistics.median(v) for name, v in rates.items()}


def table(robot: str, rates: dict[str, float], threads: int) -> str:
    ceiling1 = rates["ceiling: mj_step, 1 thread"]
    ceiling_b = rates[f"batched ceiling: mujoco.rollout, {threads} threads"]
    ceiling_t = rates[f"batched ceiling: mj_step on {threads} threads"]
    dummy = rates["single env, DummyVecEnv x4"]
    lines = [f"**{robot}**", "", "| configuration | control steps/s | / 1-thread ceiling | / rollout ceiling "
             "| / threaded mj_step | / DummyVecEnv x4 |", "|---|---:|---:|---:|---:|---:|"]
    for name, v in rates.items():
        lines.append(f"| {name} | {v:,.0f} | {v / ceiling1:.2f} | {v / ceiling_b:.2f} | {v / ceiling_t:.2f} "
                     f"| {v / dummy:.2f} |")
    return "\n".join(lines)


def scaling(rates: dict[str, float]) -> str:
    """Threads 1..2 measured (batched env x32); 8 and 16 projected with Amdahl's law from them:
    per-step time t(T) = serial + parallel / T, solved from t(1) and t(2)."""
    one, two = rates.get("batched env x32, 1 thread"), rates.get("batched env x32, 2 threads")
    if not one or not two:
        return ""
    t1, t2 = 32 / one, 32 / two                    # s per batch step
    parallel = max(0.0, 2 * (t1 - t2))
    serial = max(t1 - parallel, 1e-12)
    proj = {k: 32 / (serial + parallel / k) for k in (8, 16)}
    return (f"Scaling (x32): 1 thread {one:,.0f}, 2 threads {two:,.0f} steps/s measured "
            f"({two / one:.2f}x); the serial part (numpy after the physics, thread hand-off) is "
            f"{serial / t1:.0%} of a 1-thread step, so Amdahl projects (not measured) "
            f"{proj[8]:,.0f} steps/s on 8 cores and {proj[16]:,.0f} on 16 at 32 envs; more envs per "
            "call shrink the serial share, so larger batches scale further.")


def main(argv: list[str] | None = None) -> int:
    import os

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--robots", nargs="+", default=["quadruped", "biped"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="batched rows use at most this")
    p.add_argument("--no-ant", action="store_true", help="skip Gymnasium's Ant-v5")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = p.parse_args(argv)
    parts = ["## Environment throughput", "", machine_line(command_line("bench_env.py", argv)), "",
             f"Median of {args.rounds} interleaved rounds of {args.seconds:g} s; random actions "
             "(0.3 x U(-1, 1)); ceilings are physics only.", ""]
    for robot in args.robots:
        rates = measure(robot, args.rounds, args.seconds, args.threads)
        share = physics_share(robot, 32, min(2, args.threads))
        parts += [table(robot, rates, args.threads), "",
                  f"Physics share of the batched env's own step (x32, {min(2, args.threads)} threads: its "
                  f"randomized models and states, timed inside the step): {share:.2f}.", "",
                  scaling(rates), ""]
    if not args.no_ant:
        step, env = ant()
        rate = statistics.median(timed(step, args.seconds) for _ in range(args.rounds))
        env.close()
        parts += [f"Reference: Gymnasium `Ant-v5`, one env: {rate:,.0f} steps/s "
                  "(5 physics steps per env step).", ""]
    publish(SECTION, "\n".join(parts), write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
