"""Rendering: seconds to write a 10 s video of the shipped quadruped bundle, new defaults vs old.

Writes the "rendering" section of BENCHMARKS.md. Each setting runs `simreal render` in its own
process (as a user runs it), alternating settings over rounds so host load hits both alike; the
figure is the command's own wall time for the clip (policy, physics, OpenGL, encoding; process
start excluded). "old" is what `eval --video` did before: 640x480, every 50 Hz control step,
shadows and 4x multisampling.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
BUNDLE = ROOT / "assets" / "policies" / "quadruped"
SETTINGS = {
    "new defaults (480x360, 25 fps)": [],
    "old (640x480, 50 fps, shadows, MSAA 4)": ["--width", "640", "--height", "480", "--fps", "50", "--shadows"],
}


def render_once(extra: list[str], seconds: float, out: Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    r = subprocess.run([sys.executable, "-m", "simreal.cli", "render", str(BUNDLE), "--out", str(out),
                        "--seconds", str(seconds), *extra], capture_output=True, text=True, env=env,
                       check=True)
    took = float(re.search(r"took ([0-9.]+) s", r.stdout).group(1))
    backend = re.search(r"\((\w+)\) ->", r.stderr).group(1)
    return took, backend


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args(argv)
    from _bench_md import command_line, machine_line, publish

    times: dict[str, list[float]] = {k: [] for k in SETTINGS}
    backend = "?"
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, extra in SETTINGS.items():
                t, backend = render_once(extra, args.seconds, Path(tmp) / "clip.mp4")
                times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    new, old = med[list(SETTINGS)[0]], med[list(SETTINGS)[1]]
    rows = ["| setting | seconds for a 10 s clip (median) | runs |", "|---|---:|---|"]
    rows += [f"| {k} | {med[k]:.1f} | {', '.join(f'{t:.1f}' for t in v)} |" for k, v in times.items()]
    md = "\n".join(["## Rendering", "", machine_line(command_line("bench_render.py", argv)), "",
                    f"`simreal render {BUNDLE.relative_to(ROOT)} --seconds {args.seconds:g}`, OpenGL backend "
                    f"{backend} (chosen by simreal.envs.gl with MUJOCO_GL unset), {args.rounds} alternating rounds.",
                    "", *rows, "", f"old / new: {old / new:.1f}x."])
    publish("rendering", md, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
