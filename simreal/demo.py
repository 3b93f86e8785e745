"""`simreal demo`: the toolkit's main job with no hardware, in one command.

Starts `simreal mock-robot` for the bundle's robot (MuJoCo behind a pseudo-terminal), deploys the
shipped bundle (the quadruped by default, `--robot biped` for the biped) through the same
runtime, driver and serial protocol `simreal deploy` uses on a real robot, and prints the run
summary with the distance walked (the mock's ground truth). With --train-first it trains and
exports a fresh short policy and deploys that instead.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from simreal.bundle.shipped import shipped_bundle
from simreal.cliargs import positive_float


def train_and_export(robot: str, timesteps: str, out_root: Path, say) -> Path:
    """`simreal train ROBOT` then `simreal export`, in this process; returns the bundle folder."""
    from simreal.cli import main as simreal_main

    run_dir, bundle = out_root / "run", out_root / "bundle"
    say(f"training a fresh {robot} policy for {timesteps} steps -> {run_dir}")
    rc = simreal_main(["train", robot, "--algo", "ppo", "--timesteps", str(timesteps), "--out", str(run_dir),
                       "--no-progress"])
    if rc:
        raise RuntimeError(f"simreal train failed (exit {rc})")
    say(f"exporting -> {bundle}")
    rc = simreal_main(["export", str(run_dir), "--out", str(bundle), "--force", "--eval-episodes", "0"])
    if rc:
        raise RuntimeError(f"simreal export failed (exit {rc})")
    return bundle


def _mps(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} m/s"


def speeds(summary: dict) -> dict:
    """commanded_vx (the policy's command) and achieved_vx (mock ground truth: forward m / policy s)."""
    cmd = summary.get("command")
    policy_s = summary.get("policy_s") or 0.0
    fwd = summary.get("forward_m")
    return {"commanded_vx": None if not cmd else round(float(cmd[0]), 4),
            "achieved_vx": round(fwd / policy_s, 4) if fwd is not None and policy_s > 0 else None}


def verdict(summary: dict) -> str:
    """One line: walked / FELL / stopped by safety, with the distance and the speeds."""
    fwd, got, cmd = summary.get("forward_m"), summary.get("achieved_vx"), summary.get("commanded_vx")
    speed = (f" at {_mps(got)}" if got is not None else "") + (f" (commanded {_mps(cmd)})" if cmd is not None else "")
    walked = f"{fwd:.2f} m forward{speed}" if fwd is not None else "distance unknown (no ground truth)"
    stops = summary.get("safe_stops") or []
    fell = summary.get("fallen") or (summary.get("mock") or {}).get("falls", 0) > 0
    if fell:
        why = f"; safety stop: {stops[0]['cause']} ({stops[0]['detail']})" if stops else ""
        return f"FELL after {summary.get('policy_s', 0):.1f} s of policy, {walked}{why}"
    if stops:
        return f"stopped by safety: {stops[0]['cause']} ({stops[0]['detail']}) after {walked}"
    return f"walked {walked}, no safety stop"


def demo(*, robot: str = "quadruped", seconds: float = 6.0, gap: str = "nominal", seed: int = 0,
         bundle: str | None = None, command: str | None = None, train_first: bool = False, timesteps: str = "3e5",
         log_path: str | None = None, plot_dir: str | None = None, as_json: bool = False,
         realtime: bool = True) -> int:
    from simreal.deploy.cli import _report, exit_code
    from simreal.mock.process import spawn
    from simreal.deploy.plan import RuntimeConfig
    from simreal.deploy.session import deploy, raised_priority
    from simreal.errors import UserError
    from simreal.bundle.contract import read_contract

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        if train_first:
            path = train_and_export(robot, timesteps, Path("runs") / f"demo-{stamp}", say)
        else:
            path = Path(bundle) if bundle else shipped_bundle(robot)
        mock_robot = read_contract(path).robot    # the mock plays the robot the policy was trained for
    except (FileNotFoundError, RuntimeError, UserError) as exc:
        say(f"simreal demo: {exc}")
        return 2
    log_path = log_path or f"runs/demo/deploy-{stamp}.jsonl"
    t0 = time.monotonic()
    try:
        with spawn(mock_robot, gap=gap, seed=seed) as mock, contextlib.ExitStack() as stack:
            if realtime:     # the mock is the robot's firmware: it gets real-time priority too
                stack.enter_context(raised_priority(mock.proc.pid))
            say(f"mock {mock_robot} on {mock.port} (gap {gap}); deploying {path} for {seconds:g} s")
            # --reset-sim: the mock stands at its default pose before pre-flight, whatever came before
            summary, _ = deploy(str(path), mock.port, duration_s=seconds, log_path=log_path, command=command,
                                config=RuntimeConfig(reset_sim=True), realtime=realtime, notify=say)
            report = mock.report()
    except UserError as exc:       # StartRefused, StartInterrupted (130), BundleError, MockError, ...
        say(f"simreal demo: {exc}")
        return exc.exit_code
    summary["mock"] = {k: report[k] for k in ("falls", "watchdog_trips") if k in report}
    summary["wall_s"] = round(time.monotonic() - t0, 2)
    summary.update(speeds(summary))
    summary["verdict"] = verdict(summary)
    _report(summary, as_json)
    if not as_json:
        cmd, got = summary.get("commanded_vx"), summary.get("achieved_vx")
        print(f"speed: commanded {_mps(cmd)}, achieved {_mps(got)} (forward distance / policy time)")
        print(f"verdict: {summary['verdict']}")
    if plot_dir:
        from simreal.deploy.logplot import plot_log

        for f in plot_log(log_path, plot_dir):
            say(f"plot: {f}")
    if not as_json:
        print(f"demo took {summary['wall_s']:.1f} s")
    return exit_code(summary)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="no hardware: start the mock robot and walk the shipped quadruped policy "
                                    "on it over a real serial link",
                       description="Starts `simreal mock-robot` for the bundle's robot, deploys the shipped "
                                   "bundle through `simreal deploy`'s runtime for a few seconds and prints "
                                   "the summary.")
    p.add_argument("--robot", default="quadruped",
                   help="whose shipped policy to walk (assets/policies/ROBOT; default quadruped)")
    p.add_argument("--seconds", type=positive_float, default=6.0, help="seconds of walking (default 6)")
    p.add_argument("--gap", default="nominal", metavar="PROFILE", help="reality gap of the mock (default nominal)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bundle", default=None, help="bundle to deploy instead (its robot is the one the mock plays)")
    p.add_argument("--command", default=None, metavar="vx=V,yaw=W")
    p.add_argument("--train-first", action="store_true",
                   help="train a fresh short policy (simreal train ROBOT), export it, then deploy it")
    p.add_argument("--timesteps", default="3e5", metavar="N", help="with --train-first (default 3e5)")
    p.add_argument("--log", default=None, metavar="FILE")
    p.add_argument("--plot", default=None, metavar="DIR", help="also draw the run's plots into DIR")
    p.add_argument("--no-realtime", action="store_true",
                   help="leave scheduling priorities alone (by default the demo raises its own and the "
                        "mock's when allowed, so a busy machine does not miss deadlines)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    return demo(robot=args.robot, seconds=args.seconds, gap=args.gap, seed=args.seed, bundle=args.bundle,
                command=args.command,
                train_first=args.train_first, timesteps=args.timesteps, log_path=args.log, plot_dir=args.plot,
                as_json=args.json, realtime=not args.no_realtime)
