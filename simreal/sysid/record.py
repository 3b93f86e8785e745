"""`simreal sysid record`: play the scripted excitation on a robot (or the mock) through the deploy
runtime, so every target passes the same safety layer and start sequence as a policy's, and keep
the runtime's log (commands sent, states read, timestamps) as the recording.

DIR/recording.jsonl  the run log (simreal.deploy.runlog: header, one record per cycle, events)
DIR/recording.json   robot, stance, excitation, control period, how the run ended

The folder appears only once both files are complete (written under DIR.partial, then renamed).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from simreal.sysid.excitation import Excitation, ExcitationPolicy

STANCES = ("hoisted", "standing")
LOG_FILE, META_FILE = "recording.jsonl", "recording.json"


def record(robot: str, port: str, out: str | Path, excitation: Excitation = Excitation(), *,
           stance: str = "hoisted", confirm: Callable[[Any], bool] | None = None,
           notify: Callable[[str], None] = lambda s: None) -> dict:
    """Record on PORT into OUT; returns the metadata written. Raises StartRefused before any torque."""
    from simreal.deploy.driver import SerialDriver
    from simreal.deploy.plan import RuntimeConfig, StartRefused, plan_for_robot
    from simreal.deploy.port import PortError
    from simreal.deploy.runlog import RunLogWriter
    from simreal.deploy.runtime import Runtime
    from simreal.deploy.session import link_config
    from simreal.robot.observation import builder_for
    from simreal.robot.spec import load_robot

    if stance not in STANCES:
        raise StartRefused(f"--stance must be one of {', '.join(STANCES)}, got {stance!r}; torque stays off")
    out = Path(out)
    if out.exists():
        raise StartRefused(f"--out {out}: already exists (a recording is never overwritten); torque stays off")
    try:
        spec = load_robot(robot)
    except (KeyError, ValueError) as exc:
        raise StartRefused(f"robot {robot!r}: {exc}; torque stays off") from None
    plan = plan_for_robot(spec)
    period = plan.period
    cfg = RuntimeConfig(duration_s=excitation.duration(spec.n_joints))
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)          # a recording that never completed
    driver = SerialDriver(port, joint_names=plan.joint_names,
                          config=link_config(spec.serial, plan.n, cfg.transaction_budget(period)))
    try:
        driver.connect()
    except PortError as exc:
        raise StartRefused(f"{exc}; torque stays off") from None
    try:
        partial.mkdir(parents=True)
        header = {"robot": spec.name, "port": port, "joint_names": plan.joint_names, "period": period,
                  "default_pose": plan.default_pose, "stance": stance, "excitation": asdict(excitation)}
        log = RunLogWriter(partial / LOG_FILE, header)
        policy = ExcitationPolicy(excitation, spec.default_pose, spec.control.action_scale, period)
        rt = Runtime(driver, policy, plan, builder_for(spec), cfg, log=log, confirm=confirm)
        try:
            summary = rt.run()
        finally:
            log.close()
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        driver.close()
    meta = {"robot": spec.name, "stance": stance, "period": period, "joint_names": list(plan.joint_names),
            "excitation": asdict(excitation), "cycles": summary["cycles"], "end": summary["end"],
            "safe_stops": summary["safe_stops"], "rate_limited_cycles": summary["rate_limited_cycles"]}
    (partial / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    partial.rename(out)
    notify(f"recorded {summary['cycles']} cycles ({stance}) -> {out}")
    return meta
