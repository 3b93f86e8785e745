"""Persistence drills (docs/faults.md P1, P4): SIGKILL a process that is writing, then read what it left.

P4: a subprocess runs the Runtime in real time against the in-process mock and reports each cycle
and event on stdout once its log call has returned; it is killed mid-run or while its safe stop
damps. Everything reported must be in the log (0 lost), which must read back.
P1: `simreal train` itself (PPO on CartPole-v1, a checkpoint every 256 steps) is killed while a
checkpoint is being written (a `.tmp-*` folder is there), then resumed with `--resume`; the latest
valid checkpoint must be the newest complete one every time, and every resume must start.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

LOG_CHILD = """
import sys
from simreal.faults.bench import ScriptPolicy, contract_of, make_bench
from simreal.deploy.clock import FakeClock, MonotonicClock
from simreal.deploy.runlog import RunLogWriter
from simreal.deploy.runtime import Runtime
from simreal.deploy.plan import RuntimeConfig, plan_from_contract
from simreal.deploy.safety import SafetyConfig
from simreal.robot.observation import builder_for
from simreal.robot.spec import load_robot

log_path, faults = sys.argv[1], sys.argv[2]
spec = load_robot("quadruped")
drv = make_bench(spec, FakeClock(), faults=faults).driver     # the mock robot, in this process
log = RunLogWriter(log_path, {"robot": spec.name})
event = log.event
def loud_event(kind, **kw):
    event(kind, **kw)
    print("event", kind, flush=True)
log.event = loud_event
# Real time; overruns are not a fault here (a loaded host must not turn the awaited tilt into one).
rt = Runtime(drv, ScriptPolicy(spec), plan_from_contract(contract_of(spec), spec), builder_for(spec),
             RuntimeConfig(duration_s=60.0, soft_start_s=0.1, settle_s=0.0, damp_s=30.0, stop_timeout_s=60.0,
                           handle_signals=False,
                           safety=SafetyConfig(overrun_consecutive=10 ** 6, overrun_fraction=1.0)),
             log=log, clock=MonotonicClock(spin_s=0.0), on_cycle=lambda i, rec: print("cycle", i, flush=True))
rt.run()
"""


def child_env() -> dict[str, str]:
    """The environment for a drill's child process: this checkout's simreal first on the path."""
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


@dataclass(frozen=True)
class LogKill:
    when: str                   # "mid_run" (at cycle `at`) or "during_safe_stop" (tilt at cycle `at`)
    at: int
    cycles_reported: int
    cycles_logged: int
    cycles_lost: int            # reported done but missing from the log: must be 0
    events_reported: int
    events_lost: int            # must be 0
    in_order: bool              # the logged cycles are 0, 1, 2, ... with no gap
    periods_ms: tuple[float, ...]   # real-time loop periods the log shows (start to start)


def log_kill(path: Path, when: str, at: int, timeout_s: float = 120.0) -> LogKill:
    from simreal.deploy.runlog import read_log
    from simreal.faults.bench import at_cycle

    faults = f"tilt_at={at_cycle(at)}:90" if when == "during_safe_stop" else ""
    proc = subprocess.Popen([sys.executable, "-c", LOG_CHILD, str(path), faults], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())
    cycles: list[int] = []
    events: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        for line in proc.stdout:
            kind, _, what = line.strip().partition(" ")
            if kind == "cycle":
                cycles.append(int(what))
            elif kind == "event":
                events.append(what)
            if (when == "mid_run" and cycles and cycles[-1] >= at) or \
               (when == "during_safe_stop" and events[-1:] == ["stopping"]) or time.monotonic() > deadline:
                break
        else:
            raise RuntimeError(f"the log drill's child ended early: {proc.stderr.read()[-2000:]}")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    run = read_log(path)
    ks = [c["k"] for c in run.cycles]
    remaining = [e.get("kind") for e in run.events]
    lost_events = 0
    for e in events:                 # each reported event must be logged (in order)
        if e in remaining:
            remaining = remaining[remaining.index(e) + 1:]
        else:
            lost_events += 1
    starts = [c["t"] for c in run.cycles]
    periods = tuple(round((b - a) * 1e3, 3) for a, b in zip(starts, starts[1:]))
    return LogKill(when, at, len(cycles), len(ks), len(set(cycles) - set(ks)), len(events), lost_events,
                   ks == list(range(len(ks))), periods)


def log_kills(n: int, workdir: Path, seed: int = 0) -> list[LogKill]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        when = ("mid_run", "during_safe_stop")[k % 2]
        out.append(log_kill(Path(workdir) / f"p4-{k}.jsonl", when, rng.randint(20, 60)))
    return out


@dataclass(frozen=True)
class TrainKills:
    kills: int
    landed_in_save: int         # a `.tmp-*` checkpoint folder was there after the kill
    corrupted_latest: int       # latest_valid() failed, or fell back past the newest complete step
    resumes_failed: int         # a run ended by itself before the kill (a resume that refused to start)
    final_exit: int | None      # the last resume, run to completion (0 expected)


TRAIN = ["CartPole-v1", "--algo", "ppo", "--no-progress", "--set", "checkpoint.every=256",
         "hyperparams.n_steps=256", "eval.every=0"]


def _train(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "simreal.cli", "train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=child_env())


def _kill_in_save(proc: subprocess.Popen, ckpts: Path, rng: random.Random, timeout_s: float) -> tuple[bool, bool]:
    """SIGKILL `proc` a random 0-3 ms after a checkpoint's temp folder appears, once a complete
    checkpoint exists (or at the timeout); (whether the kill left a temp folder, whether the
    process had ended by itself)."""
    deadline = time.monotonic() + timeout_s
    seen = {p.name for p in ckpts.glob(".tmp-*")}
    while time.monotonic() < deadline and proc.poll() is None:
        now = {p.name for p in ckpts.glob(".tmp-*")}
        if now - seen and any(ckpts.glob("step_*")):
            time.sleep(rng.uniform(0.0, 0.003))
            break
        seen |= now
        time.sleep(0.0005)
    ended = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return any(ckpts.glob(".tmp-*")), ended


def train_kills(n: int, workdir: Path, seed: int = 0, timeout_s: float = 120.0) -> TrainKills:
    from simreal.train.checkpoint import CheckpointStore

    rng = random.Random(seed)
    run = Path(workdir) / "p1-run"
    ckpts = run / "checkpoints"
    landed = corrupted = resumes_failed = 0
    last_step = -1
    for k in range(n):
        args = (["--resume", str(run)] if k else [*TRAIN, "--out", str(run)]) + ["--timesteps", "100000000"]
        proc = _train(args)
        in_save, ended = _kill_in_save(proc, ckpts, rng, timeout_s)
        landed += in_save
        resumes_failed += ended
        store = CheckpointStore(ckpts)
        newest_complete = max((int(d.name.split("_")[1]) for d in store.step_dirs()), default=-1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")      # a fallback past the pointer is a warning
                step = store.latest_valid().step
            corrupted += step != newest_complete
        except Exception:                           # noqa: BLE001 - any failure to read is a corruption
            corrupted += 1
            step = -1
        last_step = max(last_step, step)
    final = _train(["--resume", str(run), "--timesteps", str(last_step + 512)])
    try:
        final.wait(timeout_s)
    except subprocess.TimeoutExpired:
        final.kill()
    return TrainKills(n, landed, corrupted, resumes_failed, final.wait())
