"""Round trip of one control cycle (COMMAND -> STATE) through SerialDriver over a pseudo-terminal.

A minimal responder in a second process answers every COMMAND with a STATE echoing the targets,
so the figure is the host's cost plus the pty and one process switch: what a real link adds on
top is its wire time, reported beside it for the configured baud rate. Writes the
"serial_link" section of BENCHMARKS.md.

    python scripts/bench_link.py [--n 3000] [--joints 12] [--baud 1000000] [--no-write]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import select
import sys
import time
import timeit
import tty
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_md import command_line, machine_line, p50_p99_max, publish  # noqa: E402

from simreal import protocol as P  # noqa: E402
from simreal.deploy.driver import LinkConfig, SerialDriver  # noqa: E402


def responder(fd: int, names: tuple[str, ...]) -> None:
    """The robot side at its simplest: decode, answer, repeat."""
    dec = P.FrameDecoder()
    n = len(names)
    zeros = (0.0,) * n
    while True:
        if not select.select([fd], [], [], 5.0)[0]:
            return
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        for item in dec.feed(data):
            if not isinstance(item, P.Frame):
                continue
            m = item.msg
            if isinstance(m, P.Hello):
                reply = P.Info("bench", names, (0, 0, 0), P.PROTOCOL_VERSION, 0, 0)
            else:
                q = m.q if isinstance(m, P.Command) else zeros
                reply = P.State(time.monotonic_ns() // 1000, 0, 0, 0, q, zeros, (1.0, 0.0, 0.0, 0.0),
                                (0.0, 0.0, 0.0), (0.0, 0.0, 9.81))
            os.write(fd, P.encode(reply, item.tag))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--joints", type=int, default=12)
    ap.add_argument("--baud", type=int, default=1_000_000)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args(argv)

    names = tuple(f"j{i}" for i in range(args.joints))
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    proc = mp.get_context("fork").Process(target=responder, args=(master, names), daemon=True)
    proc.start()
    driver = SerialDriver(os.ttyname(slave), config=LinkConfig(baudrate=args.baud, timeout_s=0.1, retries=2))
    try:
        driver.handshake()
        q = [0.1] * args.joints
        for _ in range(100):                       # warm up
            driver.send_command(q)
        driver.rtt_s.clear()
        calls = []
        for i in range(args.n):
            q[0] = i * 1e-4
            t0 = time.perf_counter()
            driver.send_command(q)
            calls.append(time.perf_counter() - t0)
        counters = driver.counters
    finally:
        driver.close()
        proc.terminate()
        os.close(master)
        os.close(slave)

    load = os.getloadavg()[0]
    cmd = P.Command(tuple(q))
    state = P.State(1, 0, 0, 0, tuple(q), tuple(q), (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 9.81))
    cmd_bytes, state_bytes = len(P.encode(cmd, 1)), len(P.encode(state, 1))
    wire_ms = (cmd_bytes + state_bytes) * 10 / args.baud * 1e3      # 8N1: 10 bits per byte
    state_frame = P.encode(state, 1)
    enc_us = min(timeit.repeat(lambda: P.encode(cmd, 1), number=2000, repeat=3)) / 2000 * 1e6
    dec_us = min(timeit.repeat(lambda: P.decode(state_frame), number=2000, repeat=3)) / 2000 * 1e6
    ms = "{:.3f} | {:.3f} | {:.3f}".format(*p50_p99_max([x * 1e3 for x in calls]))
    rtt = "{:.3f} | {:.3f} | {:.3f}".format(*p50_p99_max([x * 1e3 for x in driver.rtt_s]))

    md = "\n".join([
        "## serial_link",
        "",
        f"One `send_command` (COMMAND -> STATE, {args.joints} joints) through `SerialDriver` over a pseudo-terminal "
        f"to a minimal responder process, {args.n} transactions.",
        "",
        "| figure | p50 | p99 | max |",
        "|---|---|---|---|",
        f"| send_command call, ms | {ms} |",
        f"| write -> reply decoded (driver.rtt_s), ms | {rtt} |",
        "",
        f"Frames: COMMAND {cmd_bytes} B, STATE {state_bytes} B. A pty has no wire; a UART at {args.baud:,} baud "
        f"(8N1) adds {wire_ms:.2f} ms per transaction on top of the figures above. "
        f"Codec alone: encode COMMAND {enc_us:.1f} us, decode STATE {dec_us:.1f} us. "
        f"Link counters over the run: retries {counters.retries}, timeouts {counters.timeouts}, "
        f"stale {counters.stale_replies}. Load average during the run: {load:.1f} on {os.cpu_count()} cores "
        "(the p99/max tail is scheduling, not the link).",
    ])
    md += "\n\n" + machine_line(command_line("bench_link.py", argv))
    publish("serial_link", md, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
