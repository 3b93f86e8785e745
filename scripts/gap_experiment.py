"""The published sim-to-real experiment of issue 14 (BENCHMARKS.md section "gap_experiment").

On the lockstep mock, quadruped, under gap profiles off nominal (configs/gap: `worn`, `corner`:
all parameters at once at the adverse corners of the training ranges, `beyond`: 10-20% past
them), three kinds of policy:
  norand   `simreal train quadruped --algo ppo --no-randomize`, seeds 0 1 2
  shipped  assets/policies/quadruped (randomized, seed 0), on three mock seeds
  fitted   the same training with robot.yaml's ranges fitted by `simreal sysid fit --write` on a
           hoisted recording of the `beyond` mock (a copy of robots/quadruped, found first through
           SIMREAL_ROBOT_PATH, so the mock and the bundle agree on its hash), seeds 0 1 2
each measured with `simreal gap BUNDLE --port PORT --duration 15 --json` at the default command.

    python scripts/gap_experiment.py [--seeds 0 1 2] [--timesteps 1000000] [--no-write]
    # ~45 min on 2 idle cores; runs, bundles and each measurement are kept in runs/gap_experiment/
    # and reused by a rerun (delete a file to redo that step)

The biped is not in it: its training takes 10-15 min a seed here (BENCHMARKS "training_batched"),
six more runs did not fit the session that wrote this.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from _bench_md import command_line, machine_line, publish  # noqa: E402

from simreal.mock.process import spawn  # noqa: E402

OUT = ROOT / "runs" / "gap_experiment"
ROBOT = "quadruped"
PROFILES = ("worn", "corner", "beyond")
FIT_ON = "beyond"
FITTED_PATH = OUT / "robots"


def simreal(*args: str, env: dict | None = None, timeout: float = 3600) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "simreal.cli", *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode not in (0, 1):
        raise SystemExit(f"simreal {' '.join(args)}: exit {p.returncode}\n{p.stderr[-1500:]}")
    return p


def fitted_env() -> dict:
    return {**os.environ, "SIMREAL_ROBOT_PATH": str(FITTED_PATH)}


@contextlib.contextmanager
def robot_path(fitted: bool):
    """SIMREAL_ROBOT_PATH -> the fitted copy while the block runs (spawn() passes our environment
    to the mock, so the mock and the bundle agree on the robot's hash)."""
    old = os.environ.get("SIMREAL_ROBOT_PATH")
    if fitted:
        os.environ["SIMREAL_ROBOT_PATH"] = str(FITTED_PATH)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SIMREAL_ROBOT_PATH", None)
        else:
            os.environ["SIMREAL_ROBOT_PATH"] = old


def fit_robot() -> dict:
    """The fitted copy of the robot: record on the hoisted `beyond` mock, fit, write the ranges."""
    done = OUT / "fit.json"
    if done.is_file():
        return json.loads(done.read_text())
    shutil.rmtree(FITTED_PATH, ignore_errors=True)
    shutil.copytree(ROOT / "robots" / ROBOT, FITTED_PATH / ROBOT)
    rec = OUT / "recording"
    shutil.rmtree(rec, ignore_errors=True)
    with robot_path(True), spawn(ROBOT, gap=FIT_ON, lockstep=True, extra_args=["--hoisted"]) as m:
        simreal("sysid", "record", ROBOT, "--port", m.port, "--out", str(rec), "--yes")   # inherits robot_path
    p = simreal("sysid", "fit", str(rec), "--robot", ROBOT, "--max-delay", "4", "--json", "--write",
                env=fitted_env())
    result = json.loads(p.stdout)
    done.write_text(json.dumps(result, indent=1))
    return result


def bundle(kind: str, seed: int, timesteps: int) -> Path:
    if kind == "shipped":
        return ROOT / "assets" / "policies" / ROBOT
    out = OUT / "bundles" / f"{kind}-s{seed}"
    if (out / "policy.json").is_file():
        return out
    run = OUT / "train" / f"{kind}-s{seed}"
    shutil.rmtree(run, ignore_errors=True)
    env = fitted_env() if kind == "fitted" else None
    extra = ["--no-randomize"] if kind == "norand" else []
    print(f"training {kind} seed {seed} ...", file=sys.stderr, flush=True)
    simreal("train", ROBOT, "--algo", "ppo", "--seed", str(seed), "--timesteps", str(timesteps), "--out", str(run),
            "--no-progress", *extra, env=env)
    simreal("export", str(run), "--checkpoint", "latest", "--out", str(out), "--eval-episodes", "0", env=env)
    return out


def measure(kind: str, seed: int, profile: str, timesteps: int) -> dict:
    path = OUT / "gap" / f"{kind}-s{seed}-{profile}.json"
    if path.is_file():
        return json.loads(path.read_text())
    b = bundle(kind, seed, timesteps)
    with robot_path(kind == "fitted"), spawn(ROBOT, gap=profile, lockstep=True, seed=seed) as m:
        p = simreal("gap", str(b), "--port", m.port, "--duration", "15", "--json")       # inherits robot_path
    rep = json.loads(p.stdout)
    r, s = rep["robot"], rep["sim"]
    res = {"kind": kind, "seed": seed, "profile": profile, "ratio": rep["velocity_ratio"],
           "v_robot": r["forward_velocity"], "v_sim": s["forward_velocity"], "tracking_error": r["tracking_error"],
           "heading_drift": r["heading_drift_deg_15s"], "fell": bool(r["fell"])}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))
    print(res, file=sys.stderr, flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    global OUT, FITTED_PATH
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--timesteps", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "gap_experiment",
                    help="working folder (default runs/gap_experiment)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    OUT, FITTED_PATH = args.out, args.out / "robots"
    OUT.mkdir(parents=True, exist_ok=True)
    fitted = fit_robot()
    rows = []
    for kind in ("norand", "shipped", "fitted"):
        for profile in PROFILES:
            res = [measure(kind, s, profile, args.timesteps) for s in args.seeds]
            ratios = [r["ratio"] for r in res if r["ratio"] is not None]
            mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")   # noqa: E731
            rows.append(f"| {kind} | {profile} | {mean(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
                        f"{mean([r['v_sim'] for r in res]):.3f} | {mean([r['tracking_error'] for r in res]):.3f} | "
                        f"{mean([abs(r['heading_drift']) for r in res]):.0f} | {sum(r['fell'] for r in res)} of {len(res)} |")
    est = ", ".join(f"{name} {e['value']:.3f} +- {e['ci95']:.3f}" for name, e in fitted["estimates"].items())
    md = ["## Sim-to-real experiment: no randomization vs randomized vs fitted (issue 14)", "",
          machine_line(command_line("gap_experiment.py", argv)), "",
          f"Quadruped on the lockstep mock; `simreal gap` for 15 s at the default command. norand and fitted: "
          f"`simreal train quadruped --algo ppo --timesteps {args.timesteps}` seeds {' '.join(map(str, args.seeds))} "
          f"(norand with `--no-randomize`); shipped: the shipped bundle on mock seeds {' '.join(map(str, args.seeds))}. "
          f"Fitted: robot.yaml's ranges from `simreal sysid fit --max-delay 4 --write` on a hoisted recording of the "
          f"`{FIT_ON}` mock ({est}; delay {fitted['delay_physics_steps']} physics steps, action latency range "
          f"{fitted['action_latency_steps']} control steps). "
          "Ratio: robot velocity over the same bundle's in the nominal simulator, mean (min-max) over seeds; "
          "heading drift: mean |drift| per 15 s beyond the commanded yaw.", "",
          "| policy | gap profile | velocity ratio robot/sim | velocity sim, m/s | tracking error, m/s | "
          "heading drift, deg | falls |", "|---|---|---|---|---|---|---|", *rows]
    publish("gap_experiment", "\n".join(md), not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
