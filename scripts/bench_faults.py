"""The fault matrix at full counts (`simreal faults` without --quick); writes the "reliability"
section of BENCHMARKS.md: >= 10^6 codec mutants, 10^4 cycles per link fault and of a slow device,
20 injections per safety fault, 20 SIGKILLs of a logging deploy, 100 of `simreal train` mid-save.

    python scripts/bench_faults.py [--seed 0] [--quick] [--no-write]

Takes about ten minutes on two cores; the figures are counts and FakeClock times, so load changes
how long it takes, not what it finds (except the real-time T3 and loop-period lines).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_md import command_line, machine_line, publish  # noqa: E402

from simreal.faults.report import format_text, passed, run_all  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="reduced counts (a check of this script)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    ap.add_argument("--json", type=Path, default=None, help="also write the whole report as JSON here")
    args = ap.parse_args(argv)
    report = run_all(quick=args.quick, seed=args.seed, progress=lambda s: print(s, file=sys.stderr, flush=True))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    body = format_text(report).split("\n", 2)[2]          # the section has its own title
    md = ("## Reliability (`simreal faults`)\n\n"
          "Every row of docs/faults.md that has a drill, against the mock robot; the targets are the "
          "fault matrix's (issue #15). Same code as `simreal faults` (`--quick` in CI).\n\n"
          f"{body}\n\n{machine_line(command_line('bench_faults.py', argv))}")
    publish("reliability", md, write=not args.no_write and not args.quick)
    return 0 if passed(report) else 1


if __name__ == "__main__":
    sys.exit(main())
