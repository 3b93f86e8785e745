"""Write the "servo_bus" section of BENCHMARKS.md: the shipped policies deployed through
`simreal deploy` on the real-time mock, over docs/protocol.md firmware and over bare bus servos
(Feetech STS3215 for the quadruped, Dynamixel XL330 for the biped), side by side in one run.

Per run: the cycle's read and send times (a bus cycle is SYNC WRITE + SYNC READ + the BNO055 read),
period p99, overruns, retries and implausible replies, and how far the robot walked (the mock's
ground truth). The calibration comes from `simreal.servos.calibrate` against an identically
assembled in-process mock.

    python scripts/bench_bus.py [--duration 10] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import command_line, machine_line, publish  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = [("quadruped", "simreal"), ("quadruped", "feetech"), ("biped", "simreal"), ("biped", "dynamixel")]


def calibration(robot: str, bus: str, path: Path) -> Path:
    from simreal.hardware.wiring import save_calibration
    from simreal.mock.bus_server import ThreadedBusMock
    from simreal.mock.faults import FaultSchedule
    from simreal.mock.gap import load_gap
    from simreal.mock.operator import MockOperator
    from simreal.mock.process import bus_mock
    from simreal.robot.spec import load_robot
    from simreal.servos.bus import ServoBus
    from simreal.servos.calibrate import calibrate

    spec = load_robot(robot)
    r, fw = bus_mock(spec, load_gap(None)[1], FaultSchedule(), bus=bus, lockstep=True)
    with ThreadedBusMock(r, fw) as mock, ServoBus(mock.url, fw.family, fw.model) as sb:
        save_calibration(calibrate(sb, spec, fw.wiring, MockOperator(r)), path)
    return path


def one(robot: str, bus: str, duration: float, tmp: Path) -> dict:
    from simreal.mock.process import spawn

    extra = ["--reset-sim"] if bus == "simreal" else []     # the bus mock has no reset: it starts limp
    if bus != "simreal":
        extra = ["--bus", bus, "--calibration", str(calibration(robot, bus, tmp / f"{robot}-{bus}.yaml"))]
    with spawn(robot, bus=None if bus == "simreal" else bus, extra_args=[] if bus == "simreal" else ["--held"]) as m:
        if bus != "simreal":
            extra += ["--imu-port", m.imu_port]
        r = subprocess.run([sys.executable, "-m", "simreal.cli", "deploy", "--json", "--yes", "--duration",
                            str(duration), "--port", m.port, "--log", str(tmp / f"{robot}-{bus}.jsonl"),
                            *extra, str(ROOT / "assets" / "policies" / robot)],
                           capture_output=True, text=True, check=False)
        rep = m.report()
    if r.returncode != 0:
        raise SystemExit(f"{robot} on {bus}: deploy exit {r.returncode}\n{r.stderr}\n{r.stdout[-2000:]}")
    s = json.loads(r.stdout)
    s["walked_m"] = rep["final"]["base_pos"][0]
    return s


def row(robot: str, bus: str, s: dict, base: dict) -> str:
    link = s.get("link", {})
    link_ms = s["read_ms"]["p50"] + s["send_ms"]["p50"]
    ratio = link_ms / (base["read_ms"]["p50"] + base["send_ms"]["p50"])
    return (f"| {robot} | {bus} | {s['read_ms']['p50']:.2f} / {s['read_ms']['p99']:.2f} | "
            f"{s['send_ms']['p50']:.2f} / {s['send_ms']['p99']:.2f} | {link_ms:.2f} | {ratio:.2f} | "
            f"{s['period_ms']['p99']:.2f} | {s['overruns']} | {s['failed_cycles']} | {link.get('retries', 0)} | "
            f"{link.get('implausible', '-')} | {len(s['safe_stops'])} | {s['walked_m']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res = {k: one(*k, args.duration, Path(tmp)) for k in RUNS}
    rows = [row(robot, bus, res[(robot, bus)], res[(robot, "simreal")]) for robot, bus in RUNS]
    for r in rows:
        print(r, file=sys.stderr)
    md = ["## Bare bus servos (`simreal deploy --bus`)", "", machine_line(command_line("bench_bus.py", argv)), "",
          f"Each shipped policy for {args.duration:g} s through `simreal deploy` on the real-time mock robot "
          "(a subprocess on a pseudo-terminal, nominal gap), over docs/protocol.md firmware and over bare bus "
          "servos at 1 Mbps with a BNO055 at 115200 baud on a second pty (docs/servo_buses.md); protocol.md runs "
          "start with `--reset-sim`, bus runs with the mock's `--held` (held standing until torque on). Read: one "
          "state read (bus: SYNC READ of every servo + the IMU read); send: a command (protocol.md: COMMAND "
          "and the STATE it returns; bus: the SYNC WRITE of the goals, which earns no reply). p50 / p99 in "
          "ms; link per cycle: read + send p50; the ratio is the bus's link time over protocol.md's, same "
          "robot, same run. The mock plays the wire time at the baud rate.",
          "", "| robot | link | read ms p50 / p99 | send ms p50 / p99 | link per cycle, ms | ratio | period p99 ms | overruns | "
          "failed cycles | retries | implausible | safe stops | walked, m |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|", *rows]
    publish("servo_bus", "\n".join(md), not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
