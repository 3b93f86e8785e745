"""Train and evaluate (robot, algorithm, budget) triples; write the "training" section of BENCHMARKS.md.

    python scripts/bench_training.py Walker2d-v5:ppo:1e6 Walker2d-v5:sac:3e5 quadruped:ppo:1e6

Each SPEC is ROBOT:ALGO:TIMESTEPS[:SEED]. Its run lives in RUNS_DIR/<robot>-<algo>-<steps>-s<seed>:
a finished run is reused (not retrained), an interrupted one is resumed (`simreal train --resume`),
and a missing one is trained with `simreal train` (each in its own process). Then the final policy
(`--checkpoint latest`, or `best`) is evaluated with `simreal eval --json` and the table is rebuilt
from every evaluated run under RUNS_DIR, so runs made at different times end up in one table.
Steps/s is timesteps / total training wall time, periodic evaluation and checkpoints included.
With no SPEC, the table is rebuilt from what RUNS_DIR already holds.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))
from _bench_md import BENCH, machine_line, update_section  # noqa: E402

SECTION = "training"
# rl-baselines3-zoo benchmark (1M steps), for the same algorithm on the same task.
ZOO = {("Walker2d-v5", "ppo"): "~3,500 (zoo, 1M)", ("Walker2d-v5", "sac"): "~3,860 (zoo, 1M)"}
EVAL_FILE = "bench_eval.json"


def parse_spec(text: str) -> tuple[str, str, int, int]:
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError(f"{text!r}: expected ROBOT:ALGO:TIMESTEPS[:SEED]")
    try:
        steps = int(float(parts[2].replace("_", "")))
        seed = int(parts[3]) if len(parts) == 4 else 0
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: TIMESTEPS and SEED must be numbers") from None
    if steps <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: TIMESTEPS must be positive")
    return parts[0], parts[1], steps, seed


def simreal(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "simreal.cli", *args]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE)


def run_one(spec: tuple[str, str, int, int], runs_dir: Path, sets: list[str], episodes: int,
            checkpoint: str, command: str | None = None) -> Path:
    robot, algo, steps, seed = spec
    run = runs_dir / f"{robot.replace('/', '_')}-{algo}-{steps}-s{seed}"
    if not (run / "summary.json").is_file() or \
            json.loads((run / "summary.json").read_text()).get("timesteps", 0) < steps:
        if (run / "config.yaml").is_file():
            proc = simreal("train", "--resume", str(run), "--timesteps", str(steps), "--no-progress")
        else:
            from simreal.robot.registry import list_robots

        walk_eval = [f"eval.command={list(parse_command(command))}"] if robot in list_robots() and command else []
        sets = walk_eval + list(sets)
        proc = simreal("train", robot, "--algo", algo, "--timesteps", str(steps), "--seed",
                           str(seed), "--out", str(run), "--no-progress", "--set", *sets) if sets else \
            simreal("train", robot, "--algo", algo, "--timesteps", str(steps), "--seed",
                    str(seed), "--out", str(run), "--no-progress")
        if proc.returncode != 0:
            raise SystemExit(f"training {robot}:{algo} failed (exit {proc.returncode})")
    from simreal.robot.registry import list_robots

    fixed = ["--command", command] if command and robot in list_robots() else []
    proc = simreal("eval", str(run), "--episodes", str(episodes), "--checkpoint", checkpoint, "--json", *fixed)
    if proc.returncode != 0:
        raise SystemExit(f"evaluating {run} failed (exit {proc.returncode})")
    (run / EVAL_FILE).write_text(proc.stdout)
    return run


def _fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


WALK_FRACTION, WALK_FALLS = 0.75, 0.05   # the walking bar: >= 3/4 of the commanded speed, < 5% falls


def parse_command(text: str) -> tuple[float, float]:
    """--command "vx=0.4[,yaw=W]" -> (vx, yaw)."""
    values = dict(part.split("=", 1) for part in text.split(","))
    return float(values.get("vx", 0.0)), float(values.get("yaw", 0.0))


def time_to_walk(run: Path) -> tuple[float, int] | None:
    """(wall s, timesteps) of the first periodic evaluation that met the walking bar, or None.
    Needs a run that evaluated at a fixed command (`eval.command`, set from --command by main)."""
    import csv

    import yaml

    path = run / "evaluations.csv"
    command = (yaml.safe_load((run / "config.yaml").read_text()).get("eval") or {}).get("command")
    if not path.is_file() or not command:
        return None
    bar = WALK_FRACTION * float(command[0])
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            v, falls = row.get("mean_forward_velocity", ""), row.get("fall_rate", "")
            if v not in ("", "nan") and float(v) >= bar and float(falls) < WALK_FALLS:
                return float(row["wall_time_s"]), int(row["timesteps"])
    return None


def table(runs_dir: Path) -> str:
    lines = ["| robot | algorithm | timesteps | wall time | steps/s | time to walk | eval return | command vx "
             "| forward v (m/s) | tracking error (m/s) | fall rate | episode length | reference |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    runs = sorted(p.parent for p in runs_dir.glob(f"*/{EVAL_FILE}") if (p.parent / "summary.json").is_file())
    for run in runs:
        s = json.loads((run / "summary.json").read_text())
        e = json.loads((run / EVAL_FILE).read_text())
        rate = s["timesteps"] / s["wall_time_s"] if s["wall_time_s"] else math.nan
        walk = time_to_walk(run)
        walked = f"{_hms(walk[0])} ({walk[1]:,})" if walk else "-"
        lines.append(
            f"| {s['robot']} | {s['algo'].upper()} | {s['timesteps']:,} | {_hms(s['wall_time_s'])} "
            f"| {rate:,.0f} | {walked} | {_fmt(e['mean_return'], ',.0f')} ± {_fmt(e['std_return'], ',.0f')} "
            f"| {e['command'][0] if e.get('command') else '-'} "
            f"| {_fmt(e['mean_forward_velocity'])} | {_fmt(e['mean_tracking_error'])} "
            f"| {_fmt(e['fall_rate'], '.0%')} | {_fmt(e['mean_length'], '.0f')} "
            f"| {ZOO.get((s['robot'], s['algo']), '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="*", type=parse_spec, metavar="SPEC")
    ap.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--checkpoint", choices=["latest", "best"], default="latest")
    ap.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help="config overrides for newly started runs")
    ap.add_argument("--bench-file", type=Path, default=BENCH)
    ap.add_argument("--section", default=SECTION, help="BENCHMARKS.md section to write (default training)")
    ap.add_argument("--title", default="Training", help="the section's heading")
    ap.add_argument("--note", default="", help="a sentence appended to the section (e.g. machine load)")
    ap.add_argument("--command", default="vx=0.4", metavar="vx=V,yaw=W",
                    help="fixed velocity command when evaluating simreal robots (default vx=0.4)")
    args = ap.parse_args(argv)
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    for spec in args.specs:
        run_one(spec, args.runs_dir, args.set, args.episodes, args.checkpoint, args.command)
    body = table(args.runs_dir)
    shown = list(sys.argv[1:] if argv is None else argv)
    for flag in ("--note", "--title"):  # printed as text, not repeated in the command line
        if flag in shown:
            i = shown.index(flag)
            del shown[i:i + 2]
    command = "python scripts/bench_training.py " + " ".join(shown)
    md = "\n".join([
        f"## {args.title}", "", machine_line(command.strip()), "",
        body, "",
        f"Evaluation: `simreal eval --episodes {args.episodes} --checkpoint {args.checkpoint}`, "
        "deterministic actions, randomization as in training; return is mean ± std over episodes. "
        "Simreal robots are evaluated at a fixed command (`--command`); Gymnasium ids have none. "
        "Steps/s counts the whole run (periodic evaluation and checkpoints included). "
        "Time to walk: wall time (and timesteps) to the first periodic evaluation (at the fixed "
        "`--command`) with forward v >= 3/4 of the command and under 5 % falls. "
        "Reference: the rl-baselines3-zoo benchmark for the same algorithm and task at 1M steps.",
        *(["", args.note] if args.note else []),
    ])
    update_section(args.section, md, args.bench_file)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
