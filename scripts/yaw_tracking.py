"""Write the "yaw_tracking" section of BENCHMARKS.md: how far each shipped policy follows a
commanded yaw rate, open loop, in the nominal simulator.

    python scripts/yaw_tracking.py [--no-write]      # ~1 min on 2 cores

For each command (vx = the robot's walking speed, yaw in -0.3..0.3 rad/s) the bundle walks 10 s
with the heading hold off; the yaw rate is the heading change from 2 s on (the start-up
transient left out) over the time. A policy that tracks yaw rate gives rates that rise with the
command; the heading hold (simreal.robot.heading) can only steer a policy that does.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from _bench_md import command_line, machine_line, publish  # noqa: E402

from simreal.bundle.policy import Policy  # noqa: E402
from simreal.envs.registration import make_env  # noqa: E402

YAWS = (-0.3, -0.15, 0.0, 0.15, 0.3)
SPEED = {"quadruped": 0.4, "biped": 0.3}
SECONDS, SKIP_S = 10.0, 2.0


def yaw_rate(policy: Policy, vx: float, yaw: float, seed: int = 1) -> float:
    """Mean yaw rate (rad/s) of `policy` commanded (vx, yaw), nominal robot, hold off."""
    c = policy.contract
    env = make_env(c.robot, randomize=False, command=(vx, yaw), episode_seconds=SECONDS,
                   **(c.command_kwargs() | {"heading_hold": 0.0}))
    obs, info = env.reset(seed=seed)
    headings = [info["heading"]]
    try:
        while True:
            obs, _, term, trunc, info = env.step(policy.infer(obs)[0])
            headings.append(info["heading"])
            if term or trunc:
                break
    finally:
        env.close()
    h = np.unwrap(headings)
    skip = int(round(SKIP_S / c.control_period))
    return float((h[-1] - h[skip]) / ((len(h) - 1 - skip) * c.control_period))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for robot, vx in SPEED.items():
        policy = Policy.load(ROOT / "assets" / "policies" / robot)
        rates = [yaw_rate(policy, vx, yaw) for yaw in YAWS]
        rows.append(f"| {robot} | {vx:g} | " + " | ".join(f"{r:+.3f}" for r in rates) + " |")
        print(rows[-1], file=sys.stderr, flush=True)
    md = ["## Yaw-rate tracking of the shipped policies", "", machine_line(command_line("yaw_tracking.py", argv)), "",
          f"Each shipped bundle in the nominal simulator, heading hold off, {SECONDS:g} s per command; mean yaw "
          f"rate in rad/s from {SKIP_S:g} s on.", "",
          "| robot | vx, m/s | " + " | ".join(f"yaw {y:+g}" for y in YAWS) + " |",
          "|---|---|" + "---|" * len(YAWS), *rows]
    publish("yaw_tracking", "\n".join(md), not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
