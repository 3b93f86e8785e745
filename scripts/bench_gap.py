"""Write the "gap" section of BENCHMARKS.md: `simreal gap` for each shipped policy on the lockstep
mock under each shipped gap profile (configs/gap), 15 s at the robot's default command, with the
heading hold as the bundle was trained (the default) and again the other way (off where trained
with it, gain 1 where trained without), for the heading columns.

    python scripts/bench_gap.py [--duration 15] [--no-write]      # ~10 min on 2 idle cores

Lockstep: the mock advances one control period per command, so host load does not change the
figures. The robot side's velocity is the mock's ground truth (privileged).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from _bench_md import command_line, machine_line, publish  # noqa: E402

from simreal.bundle.policy import Policy  # noqa: E402
from simreal.mock.process import spawn  # noqa: E402

PROFILES = ("nominal", "worn", "heavy", "slippery", "corner", "beyond", "sts3215")


def one(robot: str, profile: str, duration: float, hold: str | None = None) -> dict:
    with spawn(robot, gap=profile, lockstep=True) as m:
        p = subprocess.run([sys.executable, "-m", "simreal.cli", "gap", str(ROOT / "assets" / "policies" / robot),
                            "--port", m.port, "--duration", str(duration), "--json",
                            *(["--heading-hold", hold] if hold is not None else [])],
                           capture_output=True, text=True, timeout=900)
    if p.returncode not in (0, 1):
        raise SystemExit(f"{robot} on {profile}: simreal gap exited {p.returncode}: {p.stderr[-500:]}")
    if p.returncode == 1 and not p.stdout.strip():      # stopped before the policy ran: nothing to compare
        return {"no_policy_cycle": p.stderr.strip().splitlines()[-1]}
    return json.loads(p.stdout)


def row(robot: str, profile: str, rep: dict, off: dict, hold: float) -> str:
    def f(v, fmt=".2f"):
        return "n/a" if v is None else format(v, fmt)
    if "no_policy_cycle" in rep:
        why = rep["no_policy_cycle"].split("(safe stop: ")[-1].split(": the policy")[0]
        return f"| {robot} | {profile} | fell before the policy ran: {why} | | | | | | | yes / - | | |"
    r, s = rep["robot"], rep["sim"]
    drift_off = ("-" if "no_policy_cycle" in off else
                 f"{f(off['robot']['heading_drift_deg_15s'], '.0f')} / {f(off['sim']['heading_drift_deg_15s'], '.0f')}"
                 + (" (fell)" if off["robot"]["fell"] else ""))
    lag = [j["lag_difference"] for j in rep["joints"] if j["lag_difference"] is not None]
    return (f"| {robot} | {profile} | {f(r['forward_velocity'], '.3f')} | {f(s['forward_velocity'], '.3f')} | "
            f"{f(rep['velocity_ratio'])} | {f(r['tracking_error'], '.3f')} | "
            f"{hold:g} | {f(r['heading_drift_deg_15s'], '.0f')} / {f(s['heading_drift_deg_15s'], '.0f')} | "
            f"{drift_off} | "
            f"{'yes' if r['fell'] else 'no'} / {'yes' if s['fell'] else 'no'} | "
            f"{sum(lag) / len(lag):+.2f} | {rep['observation']['mean_w1_over_sim_std']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for robot in ("quadruped", "biped"):
        trained = Policy.load(ROOT / "assets" / "policies" / robot).contract.heading_hold
        other = "0" if trained else "1"
        for profile in PROFILES:
            rows.append(row(robot, profile, one(robot, profile, args.duration),
                            one(robot, profile, args.duration, other), trained))
            print(rows[-1], file=sys.stderr, flush=True)
    md = ["## Sim-to-real gap of the shipped policies (`simreal gap`)", "",
          machine_line(command_line("bench_gap.py", argv)), "",
          f"Each shipped bundle for {args.duration:g} s at its default command on the lockstep mock under "
          "each gap profile in configs/gap, and in the nominal simulator from the default pose "
          "(`simreal gap BUNDLE --port PORT --duration S`). Velocity: forward, along the heading "
          "(robot side: the mock's ground truth). Heading drift beyond the commanded yaw, per 15 s, with "
          "the heading hold (simreal.robot.heading, on both sides) as the bundle was trained (hold: its "
          "gain, the default), and the other way round: off (`--heading-hold 0`) for a bundle trained "
          "with it, gain 1 for one trained without. "
          "Lag difference: the target-to-position lag, robot minus sim, mean over joints, in control "
          "cycles. Observation distance: 1-D Wasserstein per entry over the sim's std, mean over entries.",
          "", "| robot | gap profile | velocity robot, m/s | velocity sim, m/s | ratio robot/sim | "
          "tracking error robot, m/s | hold | heading drift robot / sim, deg per 15 s | same, hold the "
          "other way | fell robot / sim | lag difference, cycles | observation distance |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|",
          *rows]
    publish("gap", "\n".join(md), not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
