"""Replace one named section of BENCHMARKS.md, leaving the others alone.

Each benchmark script owns one section, delimited by HTML comments, so scripts can be rerun
independently without clobbering each other's figures.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nEvery figure below is written by the script named in its section; rerun it to refresh.\n"


def machine_line(command: str) -> str:
    """The provenance line every section carries: command, machine, date."""
    return (f"Command: `{command}` · machine: {platform.machine()}, nproc={os.cpu_count()}, "
            f"Python {platform.python_version()} · date: {_dt.date.today().isoformat()}")


def update_section(name: str, markdown: str, path: Path = BENCH) -> None:
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
