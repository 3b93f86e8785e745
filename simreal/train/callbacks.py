"""What happens while training runs: metrics CSV, TensorBoard, live progress, eval, checkpoints.

The parts are plain objects driven by three events, so SB3 and our own algorithms share them:
  on_step(num_timesteps, infos) -> bool   after every vectorized env step (False: stop)
  on_safe_point(num_timesteps)            weights consistent (after an update): eval, checkpoint
  on_end(num_timesteps, interrupted)      the final checkpoint and evaluation
SB3Callback adapts them to stable-baselines3: SB3 calls `on_rollout_start` after each update
(PPO) / gradient step batch (SAC), which is the safe point.

CSV rows are one per finished episode, stamped with the global step at which it finished. A
checkpoint at step N is written after every row with timesteps <= N, so a resume from it drops
the rows > N and continues: no row repeats, and the step counter has no gap.
"""
from __future__ import annotations

import csv
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from simreal.files import write_atomic
from simreal.train.episode import INFO_KEY, EpisodeStats, nanmean
from simreal.train.evaluate import EvalResult

METRIC_COLUMNS = ["timesteps", "wall_time_s", "episode", "return", "length", "forward_velocity",
                  "tracking_error", "fell"]
TERM_PREFIX = "r_"
EVAL_COLUMNS = ["timesteps", "wall_time_s", "episodes", "mean_return", "std_return",
                "mean_forward_velocity", "mean_tracking_error", "fall_rate", "mean_length", "best"]

ScalarWriter = Callable[[int, dict[str, float]], None]


def _fmt(v) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def next_multiple(step: int, every: int) -> int:
    """First multiple of `every` strictly above `step` (aligned to absolute steps, so resumes agree)."""
    return (step // every + 1) * every if every > 0 else sys.maxsize


def truncate_csv(path: Path, max_step: int) -> int:
    """Drop rows with timesteps > max_step (written after the checkpoint we resume from)."""
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return 0
    header, body = rows[0], rows[1:]
    col = header.index("timesteps")
    kept = [r for r in body if r and int(r[col]) <= max_step]
    if len(kept) != len(body):
        lines = [header] + kept
        import io

        buf = io.StringIO()
        csv.writer(buf).writerows(lines)
        write_atomic(path, buf.getvalue().encode())
    return len(kept)


@dataclass
class WallClock:
    """Training wall time that continues across resumes."""
    offset: float = 0.0
    start: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return self.offset + time.monotonic() - self.start


class EpisodeLog:
    """metrics.csv (one row per episode), TensorBoard summaries, and rolling means for display."""

    def __init__(self, path: Path, clock: WallClock, window: int, tb_every: int,
                 write_scalars: ScalarWriter | None):
        self.path, self.clock, self.tb_every, self.write_scalars = path, clock, tb_every, write_scalars
        self.recent: deque[EpisodeStats] = deque(maxlen=window)
        self.pending: list[EpisodeStats] = []
        self.header: list[str] | None = None
        self.episodes = 0
        if path.is_file() and path.stat().st_size:
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            self.header, self.episodes = rows[0], len(rows) - 1
        self.next_tb = 0
        self._file = None

    def _writer(self, stats: EpisodeStats):
        if self._file is None:
            new = self.header is None
            if new:
                self.header = METRIC_COLUMNS + [TERM_PREFIX + k for k in stats.reward_terms]
            self._file = open(self.path, "a", newline="")
            self._csv = csv.writer(self._file)
            if new:
                self._csv.writerow(self.header)
        return self._csv

    def add(self, step: int, stats: EpisodeStats) -> None:
        self.episodes += 1
        values = {"timesteps": step, "wall_time_s": self.clock.elapsed(), "episode": self.episodes,
                  "return": stats.ret, "length": stats.length,
                  "forward_velocity": stats.forward_velocity,
                  "tracking_error": stats.tracking_error, "fell": stats.fell,
                  **{TERM_PREFIX + k: v for k, v in stats.reward_terms.items()}}
        w = self._writer(stats)
        w.writerow([_fmt(values.get(c, math.nan)) for c in self.header])
        self._file.flush()
        self.recent.append(stats)
        self.pending.append(stats)

    def maybe_summarize(self, step: int, force: bool = False) -> None:
        if not self.pending or (step < self.next_tb and not force) or self.write_scalars is None:
            return
        eps, self.pending = self.pending, []
        self.next_tb = step + self.tb_every
        d = {"episode/return": nanmean([e.ret for e in eps]),
             "episode/length": nanmean([float(e.length) for e in eps]),
             "episode/fall_rate": sum(e.fell for e in eps) / len(eps),
             "episode/forward_velocity": nanmean([e.forward_velocity for e in eps]),
             "episode/tracking_error": nanmean([e.tracking_error for e in eps])}
        for name in {k for e in eps for k in e.reward_terms}:
            d[f"reward_terms/{name}"] = nanmean([e.reward_terms.get(name, math.nan) for e in eps])
        self.write_scalars(step, {k: v for k, v in d.items() if not math.isnan(v)})

    def rolling(self) -> dict[str, float]:
        eps = list(self.recent)
        if not eps:
            return {}
        return {"return": nanmean([e.ret for e in eps]),
                "velocity": nanmean([e.forward_velocity for e in eps]),
                "falls": sum(e.fell for e in eps) / len(eps)}

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class EvalLog:
    """evaluations.csv, and the best mean return so far (read back on resume)."""

    def __init__(self, path: Path):
        self.path = path
        self.best = -math.inf
        self.last: EvalResult | None = None
        self.last_step = -1
        if path.is_file():
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    self.best = max(self.best, float(row["mean_return"]))
                    self.last_step = int(row["timesteps"])

    def add(self, step: int, wall: float, r: EvalResult) -> bool:
        """Record an evaluation; True if it is the best so far."""
        is_best = r.mean_return > self.best
        self.best = max(self.best, r.mean_return)
        self.last, self.last_step = r, step
        new = not self.path.is_file() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(EVAL_COLUMNS)
            w.writerow([_fmt(x) for x in (step, wall, r.episodes, r.mean_return, r.std_return,
                                          r.mean_forward_velocity, r.mean_tracking_error,
                                          r.fall_rate, r.mean_length, is_best)])
        return is_best


def short_count(n: float) -> str:
    """1234 -> '1.2k', 3_000_000 -> '3.00M': step counts that fit a narrow terminal."""
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e4:
        return f"{n / 1e3:.0f}k"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


class Progress:
    """A live bar (rich) on a terminal; a plain status line every 30 s otherwise (log files).

    The bar keeps steps, elapsed time and ETA whole at 80 columns: those columns never wrap or
    shrink; the bar and the live figures (rate, return, velocity, falls) give way instead.
    """

    def __init__(self, total: int, start: int, log: EpisodeLog, label: str, enabled: bool = True,
                 console=None):
        self.total, self.start, self.log, self.label = total, start, log, label
        self.enabled = enabled
        self._bar = None
        self._last = 0.0
        self._t0 = time.monotonic()
        if not enabled:
            return
        from rich.console import Console

        self.console = console or Console(stderr=True)
        if self.console.is_terminal:
            from rich.progress import (BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            from rich.table import Column

            fixed = lambda: Column(no_wrap=True)                      # noqa: E731
            self._bar = RichProgress(
                TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis",
                                                                     max_width=24)),
                BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=5)),
                TextColumn("{task.fields[steps]}", table_column=fixed()),
                TimeElapsedColumn(table_column=fixed()),
                TextColumn("eta", table_column=fixed()),
                TimeRemainingColumn(table_column=fixed()),
                TextColumn("{task.fields[live]}", table_column=Column(ratio=2, no_wrap=True,
                                                                      overflow="ellipsis")),
                console=self.console, transient=False, expand=True)
            self._task = self._bar.add_task(label, total=total, completed=start, live="",
                                            steps=self._steps(start))
            self._bar.start()

    def _steps(self, step: int) -> str:
        return f"{short_count(step)}/{short_count(self.total)}"

    def _live(self, step: int) -> str:
        r = self.log.rolling()
        rate = (step - self.start) / max(time.monotonic() - self._t0, 1e-9)
        parts = [f"{short_count(rate)}/s"]
        if r:
            parts.append(f"R {r['return']:.0f}")
            if not math.isnan(r["velocity"]):
                parts.append(f"v {r['velocity']:.2f}")
            parts.append(f"falls {r['falls']:.0%}")
        return " ".join(parts)

    def update(self, step: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        interval = 0.25 if self._bar is not None else 30.0
        if not force and now - self._last < interval:
            return
        self._last = now
        if self._bar is not None:
            self._bar.update(self._task, completed=min(step, self.total), live=self._live(step),
                             steps=self._steps(min(step, self.total)))
        else:
            self.console.print(f"{self.label} {step:,}/{self.total:,} · {self._live(step)}",
                               highlight=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class TrainHooks:
    """The three training events, fanned out to the parts above."""

    def __init__(self, *, start_step: int, total: int, log: EpisodeLog, evals: EvalLog,
                 progress: Progress, clock: WallClock, eval_every: int, checkpoint_every: int,
                 evaluate: Callable[[], EvalResult], save_latest: Callable[[int], None],
                 save_best: Callable[[int], None],
                 on_eval: Callable[[int, EvalResult], None] = lambda step, result: None,
                 should_stop: Callable[[], bool] = lambda: False):
        self.log, self.evals, self.progress, self.clock = log, evals, progress, clock
        self.total, self.eval_every, self.ckpt_every = total, eval_every, checkpoint_every
        self.evaluate, self.save_latest, self.save_best = evaluate, save_latest, save_best
        self.on_eval, self.should_stop = on_eval, should_stop
        self.next_eval = next_multiple(start_step, eval_every)
        self.next_ckpt = next_multiple(start_step, checkpoint_every)
        self.last_saved = start_step
        self.interrupted = False

    def on_step(self, step: int, infos: Iterable[dict]) -> bool:
        for info in infos:
            stats = info.get(INFO_KEY)
            if stats is not None:
                self.log.add(step, stats)
        self.log.maybe_summarize(step)
        self.progress.update(step)
        if self.should_stop():
            self.interrupted = True
            return False
        return True

    def run_eval(self, step: int) -> EvalResult:
        result = self.evaluate()
        if self.log.write_scalars is not None:
            figures = {f"eval/{k}": v for k, v in result.to_dict().items()
                       if isinstance(v, (int, float)) and k != "episodes"}
            self.log.write_scalars(step, figures)
        if self.evals.add(step, self.clock.elapsed(), result):
            self.save_best(step)
        self.on_eval(step, result)
        return result

    def on_safe_point(self, step: int) -> None:
        if step >= self.next_eval:
            self.next_eval = next_multiple(step, self.eval_every)
            self.run_eval(step)
        if step >= self.next_ckpt:
            self.next_ckpt = next_multiple(step, self.ckpt_every)
            self.save_latest(step)
            self.last_saved = step

    def on_end(self, step: int) -> None:
        self.progress.update(step, force=True)
        self.progress.close()
        self.log.maybe_summarize(step, force=True)
        if not self.interrupted and self.evals.last_step != step:
            self.run_eval(step)
        self.save_latest(step)
        self.last_saved = step
        self.log.close()


def sb3_callback(hooks: TrainHooks):
    """The TrainHooks as a stable-baselines3 callback."""
    from stable_baselines3.common.callbacks import BaseCallback

    class SB3Callback(BaseCallback):
        def _on_step(self) -> bool:
            return hooks.on_step(self.model.num_timesteps, self.locals.get("infos", ()))

        def _on_rollout_start(self) -> None:
            hooks.on_safe_point(self.model.num_timesteps)

    return SB3Callback()
