"""deploy(): a bundle and a port -> a checked, logged Runtime run. What `simreal deploy` calls.

The order is the point (docs/safety.md section 1): arguments, then the bundle (verified and
self-tested), then the robot spec installed here (a broken one refuses), the command, the log
path, and only then the port; the run log is created once the port is open, and nothing is
powered before the start sequence's checks pass.
"""
from __future__ import annotations

import contextlib
import math
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from simreal.deploy import safety as S
from simreal.deploy.clock import Clock, MonotonicClock
from simreal.deploy.port import PortError
from simreal import protocol as P
from simreal.deploy.plan import (DeployPlan, PolicyLike, RuntimeConfig, StartRefused, parse_command,
                                 pipeline_problem, plan_from_contract)
from simreal.deploy.runlog import RunLogWriter
from simreal.deploy.runtime import Runtime


def stream_commands(watch: S.CommandWatch, clock: Clock, lines) -> threading.Thread:
    """Feed 'VX [YAW]' lines (stdin) into the watch from a daemon thread; bad lines are ignored."""
    def pump() -> None:
        for line in lines:
            parts = line.split()
            try:
                vals = [float(p) for p in parts[:2]]
                watch.update((vals + [0.0])[:2], clock.now())
            except (ValueError, IndexError, S.NonFiniteError):
                continue

    th = threading.Thread(target=pump, name="command-stream", daemon=True)
    th.start()
    return th


@contextlib.contextmanager
def raised_priority(pid: int = 0, fifo_priority: int = 20, nice: int = -10):
    """Best effort, for the run only: real-time scheduling (SCHED_FIFO) for a control process, else a
    lower nice value; yields what was obtained (for the log) and restores the old setting after.

    A control loop on a busy host misses deadlines because it waits for a CPU, not because it is
    slow; this is the usual cure. Needs root or CAP_SYS_NICE; without them nothing changes. The
    loop sleeps between cycles, and Linux keeps 5% of each second for other tasks regardless.
    """
    import os

    restore: Callable[[], None] | None = None
    got = "unchanged"
    try:
        old_policy, old_param = os.sched_getscheduler(pid), os.sched_getparam(pid)
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(fifo_priority))
        got = f"SCHED_FIFO {fifo_priority}"
        restore = lambda: os.sched_setscheduler(pid, old_policy, old_param)   # noqa: E731
    except (AttributeError, OSError):
        try:
            old_nice = os.getpriority(os.PRIO_PROCESS, pid)
            os.setpriority(os.PRIO_PROCESS, pid, nice)
            got = f"nice {nice}"
            restore = lambda: os.setpriority(os.PRIO_PROCESS, pid, old_nice)   # noqa: E731
        except (AttributeError, OSError) as exc:
            got = f"unchanged ({type(exc).__name__})"
    try:
        yield got
    finally:
        if restore is not None:
            try:
                restore()
            except OSError:       # the process is gone, or we may not lower it back: nothing to undo
                pass


def default_log_path(robot: str) -> str:
    import time as _time

    return f"runs/deploy/{robot}-{_time.strftime('%Y%m%d-%H%M%S')}.jsonl"


def check_arguments(duration_s: float | None, rate_hz: float | None, cfg: RuntimeConfig) -> None:
    """Refuse numbers no run can use (NaN, infinite, negative), naming the flag: before anything is opened."""
    def finite(v: Any) -> bool:
        try:
            return math.isfinite(float(v))
        except (TypeError, ValueError):
            return False

    checks = [("--duration", duration_s, duration_s is None or (finite(duration_s) and duration_s >= 0), ">= 0"),
              ("--rate", rate_hz, rate_hz is None or (finite(rate_hz) and rate_hz > 0), "> 0"),
              ("--soft-start", cfg.soft_start_s, finite(cfg.soft_start_s) and cfg.soft_start_s > 0, "> 0"),
              ("--command-timeout", cfg.safety.command_timeout_s,
               cfg.safety.command_timeout_s is None or (finite(cfg.safety.command_timeout_s)
                                                        and cfg.safety.command_timeout_s > 0), "> 0"),
              ("--heading-hold", cfg.heading_hold,
               cfg.heading_hold is None or (finite(cfg.heading_hold) and cfg.heading_hold >= 0), ">= 0"),
              ("--truth-every", cfg.truth_every, isinstance(cfg.truth_every, int) and cfg.truth_every >= 0, ">= 0"),
              ("control period", cfg.period_s, cfg.period_s is None or (finite(cfg.period_s) and cfg.period_s > 0),
               "> 0")]
    for flag, value, ok, want in checks:
        if not ok:
            raise StartRefused(f"{flag} must be a finite number {want}, got {value!r}; torque stays off")


def check_log_path(path: str | Path) -> Path:
    """The run log can be written: the file (if it exists) is a writable file, and its folder exists
    and is writable or can be created below a writable one. Leaves nothing behind.

    Writability is probed for real (an unnamed temporary file in the nearest existing folder):
    os.access says yes to root for folders nobody can create files in (/proc, read-only mounts)."""
    import tempfile

    p = Path(path)
    if p.is_dir():
        raise StartRefused(f"--log {p}: is a folder, not a file; torque stays off")
    if p.exists():
        try:
            with open(p, "a"):
                pass
        except OSError as exc:
            raise StartRefused(f"--log {p}: not writable ({exc.strerror or exc}); torque stays off") from None
        return p
    probe = p.parent if str(p.parent) else Path(".")
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise StartRefused(f"--log {p}: cannot create its folder ({probe} is not a folder); torque stays off")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise StartRefused(f"--log {p}: cannot write in {probe} ({exc.strerror or exc}); "
                           "torque stays off") from None
    return p


def link_config(serial: Any, n_joints: int, budget_s: float) -> Any:
    """The link's timing from robot.yaml's serial section: each attempt waits for both frames'
    wire time + the firmware's reply_time + the host's margin; a transaction (retries included)
    gets the smaller of serial.timeout and the cycle's budget, so a timed-out attempt is retried
    in what is left (docs/protocol.md section 9). An unknown robot: robot.yaml's defaults."""
    from simreal.deploy.driver import LinkConfig
    from simreal.robot.spec import SerialSpec

    serial = serial or SerialSpec()
    budget = min(serial.timeout, budget_s)
    return LinkConfig(baudrate=serial.baudrate, timeout_s=min(serial.attempt_timeout(n_joints), budget),
                      retries=2, budget_s=budget)


def bus_setup(spec, bus: str | None, imu_port: str | None, calibration: str | None, robot: str):
    """(wiring, calibration) for a servo-bus deploy, None for docs/protocol.md firmware; refuses
    (nothing opened yet) a missing robot, IMU port or calibration."""
    from simreal.hardware.wiring import BUS_FILE, for_family, load_calibration, load_wiring

    wiring = load_wiring(spec) if spec is not None and (spec.root / BUS_FILE).is_file() else None
    if bus is None:
        bus = wiring.family if wiring is not None and wiring.default else "simreal"
    if bus == "simreal":
        return None
    if spec is None:
        raise StartRefused(f"--bus {bus}: robot {robot!r} is not installed here (its joints' servo ids "
                           "and limits are needed); torque stays off")
    if not imu_port:
        raise StartRefused(f"--bus {bus} needs --imu-port (the BNO055's serial port); torque stays off")
    if wiring is None or wiring.family != bus:
        wiring = for_family(bus, directions=wiring.directions if wiring else {})
    return wiring, load_calibration(spec, wiring, calibration)


def bus_link_config(wiring, budget_s: float):
    from simreal.deploy.driver import LinkConfig

    return LinkConfig(baudrate=wiring.baudrate, timeout_s=min(wiring.timeout, budget_s), retries=wiring.retries,
                      budget_s=budget_s)


def deploy(bundle: str, port: str, *, duration_s: float | None = 10.0, rate_hz: float | None = None,
           log_path: str | None = None, command: str | None = None, command_stream=None,
           config: RuntimeConfig | None = None, allow_hash_mismatch: bool = False,
           allow_pipeline_mismatch: bool = False, backend: str = "auto", expect_sha256: str | None = None,
           confirm: Callable[[P.Info], bool] | None = None, link: Any = None,
           policy_wrapper: Callable[[PolicyLike], PolicyLike] | None = None,
           on_cycle: Callable[[int, dict], None] | None = None, realtime: bool = False,
           notify: Callable[[str], None] = lambda s: None, bus: str | None = None,
           imu_port: str | None = None, calibration: str | None = None) -> tuple[dict, str]:
    """Load BUNDLE, talk to PORT, run; returns (summary, log path). Raises StartRefused / BundleError.

    link: a driver.LinkConfig (default: robot.yaml's serial settings, budget from the period);
    policy_wrapper / on_cycle: hooks for tests (wrap the loaded policy; see each logged cycle);
    realtime: raise this process's scheduling priority for the run (raise_priority).
    bus: "simreal" (docs/protocol.md firmware), "feetech" or "dynamixel" (bare bus servos and a
    BNO055 on imu_port, calibrated by `calibration`, default robots/<name>/calibration.yaml);
    None: bus.yaml's bus if it says `default: true`, else "simreal".
    """
    import dataclasses as _dc

    from simreal.deploy.driver import SerialDriver
    from simreal.bundle.policy import Policy
    from simreal.robot.spec import RobotSpecError, load_robot

    # 1. arguments, then the bundle: nothing is opened yet
    cfg = config or RuntimeConfig()
    check_arguments(duration_s, rate_hz, cfg)
    cfg = _dc.replace(cfg, duration_s=duration_s, period_s=(1.0 / rate_hz) if rate_hz else cfg.period_s)
    policy = Policy.load(bundle, allow_hash_mismatch=allow_hash_mismatch, backend=backend,
                         expect_sha256=expect_sha256)
    for w in policy.warnings:
        notify(f"warning: {w}")
    spec = None
    try:
        spec = load_robot(policy.contract.robot, check_mjcf=False)
    except RobotSpecError as exc:       # installed but broken: its limits cannot be trusted, so no run
        raise StartRefused(f"robot {policy.contract.robot!r} is installed here but its description is "
                           f"broken ({exc}); fix it, torque stays off") from None
    except KeyError:                    # UnknownRobot: not installed here
        notify(f"robot {policy.contract.robot!r} is not installed here: limits come from the bundle alone")
    plan = plan_from_contract(policy.contract, spec)
    period = cfg.period_s or plan.period
    if abs(period - plan.period) > 1e-9:
        notify(f"warning: running at {1 / period:g} Hz; the policy was trained at {1 / plan.period:g} Hz")
    problem = pipeline_problem(plan, period)
    if problem and not allow_pipeline_mismatch:
        raise StartRefused(f"{problem}; or pass --allow-pipeline-mismatch. Torque stays off")
    if problem:
        notify(f"warning: {problem} (allowed by --allow-pipeline-mismatch)")
    vx, yaw = parse_command(command, plan)
    clamped = S.clamp_command((vx, yaw), plan.command_ranges)
    if tuple(clamped) != (vx, yaw):
        notify(f"warning: command ({vx:g}, {yaw:g}) is outside the trained range {plan.command_ranges}; "
               f"using ({clamped[0]:g}, {clamped[1]:g})")
    servo_bus = bus_setup(spec, bus, imu_port, calibration, plan.robot)
    if servo_bus is None:
        link = link or link_config(spec.serial if spec is not None else None, plan.n, cfg.transaction_budget(period))
    else:
        link = link or bus_link_config(servo_bus[0], cfg.transaction_budget(period))
    # 2. the log can be written (created only once the port is open)
    log_path = str(log_path or default_log_path(plan.robot))
    check_log_path(log_path)
    # 3. the port
    if servo_bus is None:
        driver = SerialDriver(port, joint_names=plan.joint_names, config=link)
    else:
        from simreal.deploy.bus_driver import BusDriver

        driver = BusDriver(port, spec, servo_bus[0], servo_bus[1], imu_url=imu_port,
                           joint_names=plan.joint_names, config=link)
    try:
        driver.connect()
    except PortError as exc:
        raise StartRefused(f"{exc}; torque stays off") from None
    try:
        return _deploy_on(driver, policy, plan, cfg, bundle=bundle, port=port, log_path=log_path, link=link,
                          command=(vx, yaw), clamped=tuple(map(float, clamped)), command_stream=command_stream,
                          period=period, confirm=confirm,
                          policy_wrapper=policy_wrapper, on_cycle=on_cycle, realtime=realtime)
    finally:
        driver.close()


def _deploy_on(driver: Any, policy: Any, plan: DeployPlan, cfg: RuntimeConfig, *, bundle: str, port: str,
               log_path: str, link: Any, command: tuple[float, float], clamped: tuple[float, ...],
               command_stream, period: float,
               confirm, policy_wrapper, on_cycle, realtime: bool) -> tuple[dict, str]:
    """deploy() once the port is open: the run log, then the Runtime."""
    import dataclasses as _dc
    import platform
    import time as _time

    vx, yaw = command
    clock = MonotonicClock()
    watch = S.CommandWatch((vx, yaw), cfg.safety.command_timeout_s if command_stream is not None else None,
                           now=clock.now())
    if command_stream is not None:
        stream_commands(watch, clock, command_stream)
    # Warm the inference session up before anything moves: the first call allocates.
    for _ in range(3):
        policy.infer(np.zeros(policy.obs_dim, np.float32))
    header = {"robot": plan.robot, "bundle": str(bundle), "port": port, "joint_names": plan.joint_names,
              "period": period, "bundle_period": plan.period, "default_pose": plan.default_pose,
              "joint_min": plan.joint_min, "joint_max": plan.joint_max, "max_target_rate": plan.max_target_rate,
              "max_tilt_deg": plan.max_tilt_deg, "command": [vx, yaw], "command_stream": command_stream is not None,
              "config": {k: v for k, v in _dc.asdict(cfg).items() if k != "safety"},
              "safety": _dc.asdict(cfg.safety), "link": _dc.asdict(link), "backend": policy.backend_name,
              "training": {"algo": policy.contract.training.algo, "timesteps": policy.contract.training.timesteps},
              "started": _time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(),
              "python": platform.python_version()}
    try:
        log = RunLogWriter(log_path, header)
    except OSError as exc:
        raise StartRefused(f"--log {log_path}: {exc.strerror or exc}; torque stays off") from None
    stack = contextlib.ExitStack()
    priority = "unchanged"
    try:
        priority = stack.enter_context(raised_priority()) if realtime else "unchanged"
        log.event("priority", got=priority)
        acting = policy_wrapper(policy) if policy_wrapper is not None else policy
        rt = Runtime(driver, acting, plan, policy.observation_builder(), cfg, log=log, clock=clock,
                     commands=watch, confirm=confirm, on_cycle=on_cycle)
        summary = rt.run()
    finally:
        stack.close()
        driver.close()
        log.close()
    summary["log"] = log_path
    summary["priority"] = priority
    summary["command"] = list(clamped)      # what the policy was asked for (a stream: its first value)
    return summary, log_path
