"""C9, SIGKILL of the host (docs/faults.md C9): no host code runs, so the robot's watchdog must make
it safe. Measured here: the time from the kill to the robot's DAMP and to its torque off.

A real `deploy` of the shipped quadruped policy runs in a subprocess against a real-time mock robot
(its own process, `--watchdog-ms 200`; `--reset-sim`, as the demo, so it stands up from its default
pose rather than from wherever it folded); once the policy has run for a while the deploy is
SIGKILLed and nothing talks to the robot. The mock records when its watchdog damped and cut
torque (mock time, which is CLOCK_MONOTONIC - t0 in real time, so it compares with the kill's
time.monotonic()). The figures are the watchdog's setting plus the mock's scheduling delay: the
host cannot do better once it is dead, which is why the watchdog is part of the protocol.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

WATCHDOG_MS = 200
DAMP_S = 0.3             # the mock's --watchdog-damp default: DAMP this long, then torque off

CHILD = """
import sys
from simreal.deploy.plan import RuntimeConfig
from simreal.deploy.session import deploy
deploy(sys.argv[1], sys.argv[2], duration_s=60, log_path=sys.argv[3], realtime=True,
       config=RuntimeConfig(reset_sim=True), on_cycle=lambda i, rec: print(i, rec["phase"], flush=True))
"""


@dataclass(frozen=True)
class HostKill:
    killed_at_cycle: int
    damp_ms: float | None           # kill -> the watchdog's DAMP
    off_ms: float | None            # kill -> torque off
    watchdog_trips: int


def host_kill(workdir: Path, seed: int = 0, policy_cycles: int = 25, timeout_s: float = 120.0) -> HostKill:
    from simreal.bundle.shipped import shipped_bundle
    from simreal.faults.persistence import child_env
    from simreal.mock.process import spawn

    log = Path(workdir) / f"c9-{seed}.jsonl"
    with spawn("quadruped", gap="nominal", seed=seed, watchdog_ms=WATCHDOG_MS) as mock:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(shipped_bundle("quadruped")), mock.port, str(log)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        cycle, policy = -1, 0
        deadline = time.monotonic() + timeout_s
        try:
            for line in proc.stdout:
                k, _, phase = line.strip().partition(" ")
                cycle = int(k)
                policy += phase == "policy"
                if policy >= policy_cycles or time.monotonic() > deadline:
                    break
            if policy < policy_cycles:
                raise RuntimeError(f"the deploy stopped by itself at cycle {cycle}: {proc.stderr.read()[-2000:]}")
            t_kill = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            time.sleep(WATCHDOG_MS / 1e3 + DAMP_S + 0.3)     # silence: the watchdog's turn
        finally:
            proc.kill()
            proc.wait()
        report = mock.report()
    t0 = report["t0_monotonic"]

    def after(mode: str) -> float | None:
        ts = [e["t"] for e in report["watchdog"] if e["mode"] == mode]
        return None if not ts else round((t0 + ts[0] - t_kill) * 1e3, 1)
    return HostKill(cycle, after("damp"), after("off"), report["watchdog_trips"])


def host_kills(n: int, workdir: Path, seed: int = 0) -> list[HostKill]:
    return [host_kill(workdir, seed + k) for k in range(n)]
