"""`simreal demo`: the toolkit's main job with no hardware, in one command.

Starts `simreal mock-robot` for the bundle's robot (MuJoCo behind a pseudo-terminal), deploys the
shipped bundle (the quadruped by default, `--robot biped` for the biped) through the same
runtime, driver and serial protocol `simreal deploy` uses on a real robot, and prints the run
summary with the distance walked (the mock's ground truth). With --train-first it trains and
exports a fresh short policy and deploys that instead.
"""
from __future__ import annotations

import contextlib
import sys
import time
from importlib import resources
from pathlib import Path

def shipped_bundle(robot: str = "quadruped") -> Path:
    """assets/policies/<robot> in a checkout, else the copy inside the installed package."""
    rel = Path("policies") / robot
    checkout = Path(__file__).resolve().parents[2] / "assets" / rel
    if (checkout / "policy.json").is_file():
        return checkout
    try:
        shipped = Path(str(resources.files("simreal._assets"))) / rel
        if (shipped / "policy.json").is_file():
            return shipped
    except (ModuleNotFoundError, TypeError):
        pass
    raise FileNotFoundError(f"no shipped {robot} bundle (looked in {checkout} and simreal._assets/{rel}); "
                            f"run `simreal demo --robot {robot} --train-first`")


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


def demo(*, robot: str = "quadruped", seconds: float = 6.0, gap: str = "nominal", seed: int = 0,
         bundle: str | None = None, command: str | None = None, train_first: bool = False, timesteps: str = "3e5",
         log_path: str | None = None, plot_dir: str | None = None, as_json: bool = False,
         realtime: bool = True) -> int:
    from simreal.deploy.cli import _report, exit_code
    from simreal.deploy.mock_robot import MockError, spawn
    from simreal.deploy.runtime import RuntimeConfig, StartRefused, deploy, raised_priority
    from simreal.export.contract import BundleError, read_contract

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        if train_first:
            path = train_and_export(robot, timesteps, Path("runs") / f"demo-{stamp}", say)
        else:
            path = Path(bundle) if bundle else shipped_bundle(robot)
        mock_robot = read_contract(path).robot    # the mock plays the robot the policy was trained for
    except (FileNotFoundError, RuntimeError, BundleError) as exc:
        say(f"simreal demo: {exc}")
        return 2
    log_path = log_path or f"runs/demo/deploy-{stamp}.jsonl"
    t0 = time.monotonic()
    try:
        with spawn(mock_robot, gap=gap, seed=seed) as mock, contextlib.ExitStack() as stack:
            if realtime:     # the mock is the robot's firmware: it gets real-time priority too
                stack.enter_context(raised_priority(mock.proc.pid))
            say(f"mock {mock_robot} on {mock.port} (gap {gap}); deploying {path} for {seconds:g} s")
            summary, _ = deploy(str(path), mock.port, duration_s=seconds, log_path=log_path, command=command,
                                config=RuntimeConfig(), realtime=realtime, notify=say)
            report = mock.report()
    except (StartRefused, BundleError, MockError, ValueError) as exc:
        say(f"simreal demo: {exc}")
        return 2
    summary["mock"] = {k: report[k] for k in ("falls", "watchdog_trips") if k in report}
    summary["wall_s"] = round(time.monotonic() - t0, 2)
    _report(summary, as_json)
    if plot_dir:
        from simreal.deploy.logplot import plot_log

        for f in plot_log(log_path, plot_dir):
            say(f"plot: {f}")
    if not as_json:
        print(f"demo took {summary['wall_s']:.1f} s")
    return exit_code(summary)

