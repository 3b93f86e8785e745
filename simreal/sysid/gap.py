"""`simreal gap BUNDLE --port PORT`: the same policy and command on the robot and in simulation.

The robot side is an ordinary `simreal deploy` run (same start sequence, safety layer, stop and
log); the simulation side plays the bundle in the robot's nominal simulator (no randomization)
from the default pose, for as many policy cycles as the robot ran. Both become a Trace and are
compared by simreal.sysid.gap_metrics: walking figures, per-joint lag and tracking error, and the
distance between the two observation distributions.

Forward velocity on the robot side needs a velocity source: the mock's ground truth (labelled
privileged), or nothing on hardware, where those figures are reported as unavailable rather
than guessed. The return needs the reward's privileged terms, so it is the simulation's only.

--out DIR gets gap.json, robot.jsonl (the deploy log), sim.npz and joints.png, all at once
(written under DIR.partial, then renamed).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from simreal.errors import EXIT_SAFETY_STOP, UserError
from simreal.sysid import gap_metrics as M

ROBOT_LOG = "robot.jsonl"


class NothingToCompare(UserError):
    """The robot never reached the policy (a safe stop during start-up): one line, exit 1."""

    exit_code = EXIT_SAFETY_STOP


def robot_trace(log_path: str | Path, period: float, command: tuple[float, float]) -> M.Trace:
    """The policy phase of a deploy run log as a Trace (velocity from the mock's ground truth
    when the log has it on every cycle)."""
    from simreal.deploy.runlog import read_log
    from simreal.deploy.safety import TILT
    from simreal.robot.observation import heading_of

    log = read_log(log_path)
    cyc = [c for c in log.cycles if c.get("phase") == "policy" and "obs" in c and "sent" in c and "state" in c]
    if not cyc:
        trips = log.events_of("trip")
        why = f" (safe stop: {trips[0].get('cause')}: {trips[0].get('detail')})" if trips else ""
        raise NothingToCompare(f"{log_path}: the robot ran no policy cycle{why}; nothing to compare")
    heading = heading_of(np.array([c["state"]["quat"] for c in cyc]))
    truth = [c.get("truth") for c in cyc]
    vel = pos = None
    if sum(t is not None for t in truth) >= 0.9 * len(truth):    # a missed ground-truth reply is NaN
        v = np.array([t["vel"][:2] if t else (np.nan, np.nan) for t in truth])
        vel = v[:, 0] * np.cos(heading) + v[:, 1] * np.sin(heading)
        pos = np.array([t["pos"][:2] if t else (np.nan, np.nan) for t in truth])
    fell = any(t is not None and t.get("fallen") for t in truth) or any(
        e.get("cause") == TILT for e in log.events_of("trip"))
    return M.Trace("robot", period, command, np.array([c["state"]["q"] for c in cyc]),
                   np.array([c["sent"] for c in cyc]), np.array([c["obs"] for c in cyc]), heading,
                   vel, pos, bool(fell), None, privileged=vel is not None)


def sim_trace(policy: Any, cycles: int, command: tuple[float, float], seed: int = 0,
              heading_hold: float = 0.0) -> M.Trace:
    """The bundle's policy in the robot's nominal simulator for `cycles` policy cycles (with the
    heading hold the robot side ran with)."""
    from simreal.envs.registration import make_env

    c = policy.contract
    env = make_env(c.robot, randomize=False, command=command, episode_seconds=(cycles + 2) * c.control_period,
                   **(c.command_kwargs() | {"heading_hold": heading_hold}))
    u = env.unwrapped
    obs, _ = env.reset(seed=seed)
    q, sent, obs_log, heading, vel, pos = [], [], [], [], [], []
    ret, fell = 0.0, False
    try:
        for _ in range(cycles):
            sim = u.sim
            h = sim.heading()
            v = sim.base_lin_vel_world()
            q.append(sim.joint_pos())
            obs_log.append(obs)
            heading.append(h)
            vel.append(v[0] * np.cos(h) + v[1] * np.sin(h))
            pos.append(sim.base_pos()[:2])
            action, _targets = policy.infer(obs)
            obs, r, term, trunc, _ = env.step(action)
            sent.append(u.last_targets)
            ret += float(r)
            if term or trunc:
                fell = bool(term)
                break
    finally:
        env.close()
    return M.Trace("sim", u.dt, command, np.array(q), np.array(sent), np.array(obs_log), np.array(heading),
                   np.array(vel), np.array(pos), fell, ret)


def compare(robot: M.Trace, sim: M.Trace, joint_names: list[str], obs_names: list[str]) -> dict:
    n = min(robot.cycles, sim.cycles)       # a fall ends one side early: compare the common part
    rw, sw = M.walking(robot), M.walking(sim)
    r, s = (dataclasses.replace(t, q=t.q[:n], sent=t.sent[:n], obs=t.obs[:n], heading=t.heading[:n])
            for t in (robot, sim))
    return {
        "robot": rw, "sim": sw,
        "velocity_ratio": M.ratio(rw["forward_velocity"], sw["forward_velocity"]),
        "progress_ratio": M.ratio(rw["progress_velocity"], sw["progress_velocity"]),
        "compared_cycles": n,
        "joints": M.joints(r, s, joint_names),
        "observation": M.observation_distance(r.obs, s.obs, obs_names),
    }


def format_report(rep: dict) -> str:
    def f(v: Any, fmt: str = ".3f") -> str:
        return "n/a" if v is None else format(v, fmt)

    r, s = rep["robot"], rep["sim"]
    lines = [f"{'':<28}{'robot':>12}{'sim':>12}",
             f"{'forward velocity, m/s':<28}{f(r['forward_velocity']):>12}{f(s['forward_velocity']):>12}"
             + ("  (robot: mock ground truth, privileged)" if r["privileged"] else ""),
             f"{'tracking error, m/s':<28}{f(r['tracking_error']):>12}{f(s['tracking_error']):>12}",
             f"{'heading drift, deg / 15 s':<28}{f(r['heading_drift_deg_15s'], '.1f'):>12}"
             f"{f(s['heading_drift_deg_15s'], '.1f'):>12}",
             f"{'fell':<28}{str(r['fell']):>12}{str(s['fell']):>12}",
             f"{'return':<28}{'n/a':>12}{f(s['return'], '.2f'):>12}  (the reward needs privileged terms)",
             f"velocity ratio robot/sim: {f(rep['velocity_ratio'])}"
             + (f"   (heading hold gain {rep['heading_hold']:g} on both)" if rep.get("heading_hold") else ""),
             "",
             f"{'joint':<16}{'lag robot':>10}{'lag sim':>10}{'diff':>8}{'rms robot':>11}{'rms sim':>10}"
             "   (lag in control cycles, rms in rad)"]
    for j in rep["joints"]:
        lines.append(f"{j['joint']:<16}{f(j['lag_robot'], '.2f'):>10}{f(j['lag_sim'], '.2f'):>10}"
                     f"{f(j['lag_difference'], '+.2f'):>8}{j['rms_error_robot']:>11.4f}{j['rms_error_sim']:>10.4f}")
    o = rep["observation"]
    lines += ["", f"observation distance (1-D Wasserstein / sim std, mean over entries): "
                  f"{o['mean_w1_over_sim_std']:.3f}; largest: "
              + ", ".join(f"{e['entry']} {e['w1_over_sim_std']:.2f}" for e in o["largest"])]
    return "\n".join(lines)


def plot_joints(robot: M.Trace, sim: M.Trace, names: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    cols = 2 if n > 4 else 1
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 1.9 * rows), dpi=100, sharex=True, squeeze=False)
    for j, ax in enumerate(axes.flat):
        if j >= n:
            ax.set_visible(False)
            continue
        for tr, color in ((robot, "C3"), (sim, "C0")):
            t = np.arange(tr.cycles) * tr.period
            ax.plot(t, tr.q[:, j], color=color, lw=1.1, label=f"{tr.source} position")
            ax.plot(t, tr.sent[:, j], color=color, lw=0.7, ls=":", label=f"{tr.source} target")
        ax.set_ylabel(names[j], fontsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=6, ncol=2)
    for ax in axes[-1]:
        ax.set_xlabel("s since the policy started")
    fig.suptitle("joint positions and targets: robot vs simulation", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def gap(bundle: str, port: str, *, duration_s: float = 10.0, command: str | None = None,
        out: str | Path | None = None, confirm: Callable[[Any], bool] | None = None,
        allow_pipeline_mismatch: bool = False, heading_hold: float | None = None,
        notify: Callable[[str], None] = lambda s: None) -> dict:
    """Run BUNDLE on PORT through deploy, then in simulation (both with the same heading hold:
    `heading_hold`, else the bundle's trained gain); the comparison as a dict."""
    from simreal.bundle.policy import Policy
    from simreal.deploy.plan import RuntimeConfig, StartRefused
    from simreal.deploy.session import deploy

    final = Path(out) if out is not None else None
    if final is not None and final.exists():
        raise StartRefused(f"--out {final}: already exists (a gap report is never overwritten); torque stays off")
    work = final.with_name(final.name + ".partial") if final is not None else Path(tempfile.mkdtemp())
    if final is not None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    try:
        summary, log_path = deploy(bundle, port, duration_s=duration_s, command=command, log_path=str(work / ROBOT_LOG),
                                   config=RuntimeConfig(truth_every=1, heading_hold=heading_hold),
                                   confirm=confirm, allow_pipeline_mismatch=allow_pipeline_mismatch,
                                   notify=notify)
        cmd = (float(summary["command"][0]), float(summary["command"][1]))
        policy = Policy.load(bundle)
        robot = robot_trace(log_path, policy.contract.control_period, cmd)
        notify(f"robot: {robot.cycles} policy cycles ({summary['end']}); now the same in simulation")
        sim = sim_trace(policy, robot.cycles, cmd, heading_hold=summary["heading_hold"])
        layout = policy.observation_builder().layout
        rep = compare(robot, sim, list(policy.contract.joint_names), layout.entry_names())
        rep.update({"bundle": str(bundle), "port": port, "command": list(cmd),
                    "heading_hold": summary["heading_hold"], "robot_end": summary["end"],
                    "safe_stops": summary["safe_stops"]})
        if final is not None:
            (work / "gap.json").write_text(json.dumps(rep, indent=2) + "\n")
            np.savez_compressed(work / "sim.npz", q=sim.q, sent=sim.sent, obs=sim.obs, heading=sim.heading,
                                forward_velocity=sim.forward_velocity, position=sim.position)
            plot_joints(robot, sim, list(policy.contract.joint_names), work / "joints.png")
            work.rename(final)
        return rep
    finally:
        if final is None or work.exists():
            shutil.rmtree(work, ignore_errors=True)
