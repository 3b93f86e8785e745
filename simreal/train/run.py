"""A training run: a directory that holds everything needed to follow, resume, evaluate and export.

Run directory layout (names in layout.RunPaths):

    config.yaml         the resolved config (every default filled in); also valid as --config
    run.json            robot, algo, seed, env kwargs, git revision (+ dirty flag), package versions,
                        command line, start time, observation/action sizes; one entry per resume
    metrics.csv         one row per finished training episode: timesteps, wall_time_s, episode,
                        return, length, forward_velocity, tracking_error, fell, r_<term> (per-episode
                        sum of each reward term); continues across resumes with no repeat or gap
    evaluations.csv     periodic deterministic evaluations (evaluate.py), `best` marks new bests
    tb/                 TensorBoard: SB3's train/* plus episode/* and reward_terms/*
    checkpoints/        step_<N>/ (policy.pt, optimizer.pt, normalizer.json, state.json,
                        replay_buffer.npz for SAC, manifest.json) and `latest`  (checkpoint.py)
    best/               the checkpoint that scored the best evaluation, same format
    normalizer.json     observation normalization statistics of the latest checkpoint
    learning_curve.png  return, forward velocity and fall rate against steps (plots.py)
    summary.json        timesteps, wall time, steps/s, final and best evaluation

For export: `snapshot.load_run(run_dir)` gives (config, model, normalizer);
`policy_module.deterministic_actor(model)` maps normalized observations to actions.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from simreal.errors import UserError
from simreal.train.callbacks import (EpisodeLog, EvalLog, Progress, TrainHooks, WallClock,
                                     truncate_csv)
from simreal.files import write_atomic
from simreal.train.checkpoint import Checkpoint, CheckpointStore
from simreal.train.config import TrainConfig, dump_yaml, load_resolved
from simreal.train.layout import RunPaths

EvalHook = Callable[[int, Any], None]     # (step, EvalResult) after each periodic evaluation

REPO = Path(__file__).resolve().parents[2]


class RunError(UserError, RuntimeError):
    """A run directory cannot be used as asked (exists, locked, not a run)."""


def git_revision(path: Path = REPO) -> dict:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    rev = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if rev else None
    return {"commit": rev, "dirty": bool(status) if status is not None else None}


def _versions() -> dict:
    import gymnasium
    import stable_baselines3
    import torch

    from simreal import __version__ as simreal_version  # type: ignore[attr-defined]
    return {"simreal": simreal_version, "python": platform.python_version(),
            "torch": torch.__version__, "stable_baselines3": stable_baselines3.__version__,
            "gymnasium": gymnasium.__version__}


def default_run_dir(cfg: TrainConfig, root: Path = Path("runs")) -> Path:
    name = cfg.robot.replace("/", "_")
    return root / f"{name}-{cfg.algo}-{time.strftime('%Y%m%d-%H%M%S')}-s{cfg.seed}"


@contextlib.contextmanager
def run_lock(paths: RunPaths) -> Iterator[None]:
    """One writer per run directory (a second `simreal train --resume` on it is refused)."""
    fd = os.open(paths.lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"{paths.root}: another process is training in this run directory") from None
        yield
    finally:
        os.close(fd)


class StopFlag:
    """First Ctrl-C / SIGTERM: stop after the current step and save; second: abort at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        def handler(signum, _frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print(f"\n{signal.Signals(signum).name}: stopping after this step and saving a "
                  f"checkpoint (again to abort)", file=sys.stderr)

        old = {}
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                old[s] = signal.signal(s, handler)
        except ValueError:   # not the main thread: leave signals alone
            pass
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


@dataclass(frozen=True)
class Summary:
    run_dir: Path
    robot: str
    algo: str
    timesteps: int
    wall_time_s: float
    steps_per_s: float             # this session's steps / this session's wall time
    interrupted: bool
    final_eval: dict | None
    best_eval_return: float | None

    def line(self) -> str:
        from simreal.train.evaluate import EvalResult

        head = (f"{'stopped' if self.interrupted else 'done'}: {self.robot} {self.algo} "
                f"{self.timesteps:,} steps in {_hms(self.wall_time_s)} ({self.steps_per_s:,.0f} steps/s)")
        ev = ""
        if self.final_eval:
            r = EvalResult(**{k: (math.nan if v is None else v) for k, v in self.final_eval.items()
                              if k not in ("returns", "ends")},
                           ends=tuple(sorted((self.final_eval.get("ends") or {}).items())))
            ev = f" · eval {r.line()}"
        tail = (f" · resume: simreal train --resume {self.run_dir}" if self.interrupted
                else f" · {self.run_dir}")
        return head + ev + tail


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _write_run_json(paths: RunPaths, cfg: TrainConfig, argv: list[str] | None, resumed_from: int | None,
                    init_from: dict | None = None) -> None:
    info = json.loads(paths.run_json.read_text()) if paths.run_json.is_file() else {
        "robot": cfg.robot, "algo": cfg.algo, "seed": cfg.seed, "env_kwargs": dict(cfg.env.kwargs),
        "randomize": cfg.env.randomize, "init_from": init_from, "sessions": []}
    info["sessions"].append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "resumed_from_step": resumed_from, "argv": argv,
                             "git": git_revision(), "versions": _versions(),
                             "host": platform.node(), "nproc": os.cpu_count()})
    info["git"] = info["sessions"][0]["git"]
    write_atomic(paths.run_json, json.dumps(info, indent=1).encode())


def train(cfg: TrainConfig, out: Path | None = None, *, progress: bool = True,
          argv: list[str] | None = None, init_from: Path | None = None,
          on_eval: EvalHook | None = None) -> Summary:
    """Start a new run in `out` (default runs/<robot>-<algo>-<time>-s<seed>).

    `init_from` (a run directory: its best checkpoint, else its latest; or a checkpoint folder)
    starts the network and observation statistics from another run, e.g. to fine-tune with a
    lower learning rate or harder randomization. Step counter, optimizer and schedules start fresh.
    `on_eval(step, result)` sees every periodic evaluation (a sweep reports them to Ray).
    """
    from simreal.train.checkpoint import verify
    from simreal.train.snapshot import check_init_source, find_checkpoint

    root = Path(out) if out is not None else default_run_dir(cfg)
    print(f"simreal train: {cfg.robot} · {cfg.algo} · {cfg.timesteps:,} steps · {cfg.n_envs} envs · "
          f"seed {cfg.seed} -> {root}", file=sys.stderr, flush=True)
    init = None
    if init_from is not None:
        source = Path(init_from)
        if not source.is_dir():
            raise RunError(f"--init-from {source}: no such run directory or checkpoint folder")
        init = find_checkpoint(source) if RunPaths(source).config.is_file() else verify(source)
        source_state = check_init_source(init, cfg)
    paths = RunPaths(root)
    if paths.config.exists():
        if not CheckpointStore(paths.checkpoints).step_dirs():
            raise RunError(f"{root}: holds a run that never saved a checkpoint (interrupted at its start?); "
                           f"delete it (rm -r {root}) or choose another --out")
        raise RunError(f"{root}: already holds a run; continue it with `simreal train --resume {root}` "
                       f"or choose another --out")
    check_environment(cfg)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(paths.config, dump_yaml(cfg).encode())
    _write_run_json(paths, cfg, argv, None, init_from=None if init is None else {
        "checkpoint": str(init.path.resolve()), "step": init.step,
        "config_sha256": source_state["config_sha256"]})
    try:
        return _execute(paths, cfg, resume=False, progress=progress, init=init, on_eval=on_eval)
    except BaseException:
        _discard_if_unsaved(paths, created)
        raise


def check_environment(cfg: TrainConfig) -> None:
    """Build (and reset) one environment as training will, before anything is written.

    A broken robot.yaml or a bad env kwarg is reported here once, as one error, instead of by
    every vectorized worker; the run directory does not exist yet.
    """
    from simreal.train.envs import make_single

    try:
        env = make_single(cfg.robot, cfg.env.randomize, dict(cfg.env.kwargs))
    except UserError:              # a broken robot.yaml names its own file and field
        raise
    except (TypeError, ValueError) as e:   # an env kwarg the env does not take, or a value it refuses
        raise RunError(f"env.kwargs: {e}") from None
    try:
        env.reset(seed=cfg.seed)
    finally:
        env.close()


def _discard_if_unsaved(paths: RunPaths, created: bool) -> None:
    """A new run that ends before its first checkpoint leaves nothing that blocks its --out."""
    if CheckpointStore(paths.checkpoints).step_dirs():
        return
    if created:
        shutil.rmtree(paths.root, ignore_errors=True)
    else:       # the folder was the user's: take back only what this run wrote
        for f in (paths.config, paths.run_json, paths.metrics, paths.evaluations, paths.normalizer,
                  paths.lock):
            f.unlink(missing_ok=True)
        shutil.rmtree(paths.tensorboard, ignore_errors=True)
    print(f"no checkpoint was saved: removed the run's files from {paths.root}", file=sys.stderr)


def resume(run_dir: Path, *, timesteps: int | None = None, progress: bool = True,
           argv: list[str] | None = None, on_eval: EvalHook | None = None) -> Summary:
    """Continue a run from its latest valid checkpoint, to `timesteps` if given (else its config's)."""
    paths = RunPaths(Path(run_dir))
    if not paths.config.is_file():
        raise RunError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg = load_resolved(paths.config)
    if timesteps is not None and timesteps != cfg.timesteps:
        cfg = cfg.model_copy(update={"timesteps": timesteps})
        write_atomic(paths.config, dump_yaml(cfg).encode())
    return _execute(paths, cfg, resume=True, progress=progress, argv=argv, on_eval=on_eval)


def _execute(paths: RunPaths, cfg: TrainConfig, *, resume: bool, progress: bool,
             argv: list[str] | None = None, init: Checkpoint | None = None,
             on_eval: EvalHook | None = None) -> Summary:
    import torch

    from simreal.train.envs import eval_kwargs, make_single
    from simreal.train.evaluate import EVAL_SEED_OFFSET, run_episodes
    from simreal.train.plots import plot_learning_curve
    from simreal.train.trainers import make_trainer

    torch.set_num_threads(cfg.torch_threads)
    latest = CheckpointStore(paths.checkpoints, keep=cfg.checkpoint.keep)
    best = CheckpointStore(paths.best, keep=1)
    with run_lock(paths):
        start_step, wall_offset, ckpt = 0, 0.0, None
        if resume:
            ckpt = latest.latest_valid()
            start_step = ckpt.step
        trainer = make_trainer(cfg, seed_offset=start_step, tb_dir=paths.tensorboard)
        if init is not None:
            trainer.init_weights(init)
            print(f"starting from {init.path} (step {init.step:,})", file=sys.stderr)
        if ckpt is not None:
            state = trainer.restore(ckpt)
            wall_offset = float(state.get("wall_time_s", 0.0))
            for moved in latest.quarantine_newer(start_step) + best.quarantine_newer(start_step):
                print(f"set aside {moved} (newer than the checkpoint resumed from)", file=sys.stderr)
            truncate_csv(paths.metrics, start_step)
            truncate_csv(paths.evaluations, start_step)
            _write_run_json(paths, cfg, argv, start_step)
            print(f"resuming {paths.root} from step {start_step:,} ({ckpt.path.name})", file=sys.stderr)

        clock = WallClock(offset=wall_offset)
        log = EpisodeLog(paths.metrics, clock, cfg.log.window, cfg.log.tensorboard_every,
                         trainer.scalar_writer())
        evals = EvalLog(paths.evaluations)
        eval_rand = cfg.eval.randomize if cfg.eval.randomize is not None else cfg.env.randomize
        fixed = {"command": list(cfg.eval.command)} if cfg.eval.command is not None else {}
        eval_env = make_single(cfg.robot, eval_rand, eval_kwargs(cfg.env.kwargs) | fixed)
        title = f"{cfg.robot} · {cfg.algo} · seed {cfg.seed}"
        stop = StopFlag()

        def evaluate():
            return run_episodes(trainer.act, eval_env, trainer.normalizer(), cfg.eval.episodes,
                                cfg.seed + EVAL_SEED_OFFSET)

        def save(store: CheckpointStore, step: int, full: bool) -> None:
            store.save(step, lambda d: trainer.write(d, clock.elapsed(), full),
                       meta={"robot": cfg.robot, "algo": cfg.algo})

        def save_latest(step: int) -> None:
            save(latest, step, full=True)
            write_atomic(paths.normalizer, trainer.normalizer().to_json().encode())

        last_plot = [time.monotonic()]

        def after_eval(step: int, result) -> None:
            if on_eval is not None:
                on_eval(step, result)
            if time.monotonic() - last_plot[0] >= 60.0:   # drawing takes ~1 s: at most once a minute
                plot_learning_curve(paths.root, title, cfg.log.window)
                last_plot[0] = time.monotonic()

        hooks = TrainHooks(
            start_step=start_step, total=cfg.timesteps, log=log, evals=evals,
            progress=Progress(cfg.timesteps, start_step, log, f"{cfg.robot} {cfg.algo}", progress),
            clock=clock, eval_every=cfg.eval.every, checkpoint_every=cfg.checkpoint.every,
            evaluate=evaluate, save_latest=save_latest,
            save_best=lambda step: save(best, step, full=False),
            on_eval=after_eval,
            should_stop=stop)
        session_start = time.monotonic()
        try:
            with stop.installed():
                trainer.learn(cfg.timesteps, hooks)
            step = trainer.num_timesteps
            hooks.on_end(step)
        finally:
            hooks.progress.close()
            log.close()
            eval_env.close()
            trainer.close()
        plot_learning_curve(paths.root, title, cfg.log.window)
        session = time.monotonic() - session_start
        summary = Summary(
            run_dir=paths.root, robot=cfg.robot, algo=cfg.algo, timesteps=step,
            wall_time_s=clock.elapsed(), steps_per_s=(step - start_step) / max(session, 1e-9),
            interrupted=hooks.interrupted,
            final_eval=evals.last.to_dict() if evals.last is not None and evals.last_step == step else None,
            best_eval_return=evals.best if math.isfinite(evals.best) else None)
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in summary.__dict__.items()}
        write_atomic(paths.summary, json.dumps(d, indent=1).encode())
        return summary
