"""`simreal faults`: run docs/faults.md's drills against the mock robot and print the figures."""
from __future__ import annotations

import argparse
import json
import sys

from simreal.cliargs import nonnegative_int

EPILOG = """\
examples:
  simreal faults --quick            # every drill at reduced counts (~30 s; CI runs this)
  simreal faults --json > faults.json
  python scripts/bench_faults.py    # the full run, written into BENCHMARKS.md ("Reliability")
exit codes: 0 every target met, 1 a target missed (the report says which), 2 bad input,
130 interrupted."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("faults", help="run the fault matrix (docs/faults.md) against the mock and print figures",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Codec mutants, link faults with exact counts, slow-device timing, safety "
                                   "stops with time to detect and to torque off, SIGKILL of a deploy's log and of "
                                   "`simreal train` mid-save; each figure held against its target.")
    p.add_argument("--quick", action="store_true", help="reduced counts: every drill, in about half a minute")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S", help="seed of every drill (default 0)")
    p.set_defaults(func=_faults)


def _faults(args: argparse.Namespace) -> int:
    from simreal.faults.report import format_text, passed, run_all

    report = run_all(quick=args.quick, seed=args.seed,
                     progress=(lambda s: None) if args.json else (lambda s: print(s, file=sys.stderr, flush=True)))
    print(json.dumps(report, indent=1) if args.json else format_text(report))
    return 0 if passed(report) else 1
