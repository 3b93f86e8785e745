"""Replace one named section of BENCHMARKS.md, leaving the others alone.

Each benchmark script owns one section, delimited by HTML comments, so scripts can be rerun
independently without clobbering each other's figures.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nEvery figure below is written by the script named in its section; rerun it to refresh.\n"


def machine_line(command: str) -> str:
    """The provenance line every section carries: command, machine, date."""
    return (f"Command: `{command}` · machine: {platform.machine()}, nproc={os.cpu_count()}, "
            f"Python {platform.python_version()} · date: {_dt.date.today().isoformat()}")


def p50_p99_max(xs) -> tuple[float, float, float]:
    """The three figures every latency row reports (numpy's linear-interpolation percentiles)."""
    a = np.asarray(xs, dtype=float)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


def command_line(script: str, argv: list[str] | None) -> str:
    """How the script was invoked, for the provenance line."""
    return " ".join([f"python scripts/{script}", *(sys.argv[1:] if argv is None else argv)])


def publish(section: str, markdown: str, write: bool) -> None:
    """Print the section; write it into BENCHMARKS.md unless --no-write."""
    print(markdown)
    if write:
        update_section(section, markdown)
        print(f"\nwrote BENCHMARKS.md section '{section}'", file=sys.stderr)


def update_section(name: str, markdown: str, path: Path = BENCH) -> None:
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
