import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# One thread everywhere: CI has 2 cores and torch's default pool oversubscribes them.
torch.set_num_threads(1)

ROBOTS = ["quadruped", "biped"]


@pytest.fixture(params=ROBOTS)
def robot(request) -> str:
    return request.param


# --------------------------------------------------------------------------- the CLI as a user runs it


ROOT = Path(__file__).resolve().parents[1]


def run_simreal(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 180,
                stdin: str | None = None) -> subprocess.CompletedProcess:
    """`simreal ARGS` in a subprocess (the user's view: exit code, stdout, stderr), MUJOCO_GL unset."""
    base = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY",
                                                              "SIMREAL_DEBUG")}
    return subprocess.run([sys.executable, "-m", "simreal.cli", *args], capture_output=True, text=True,
                          env=base | (env or {}), cwd=cwd or ROOT, timeout=timeout,
                          input=stdin if stdin is not None else "", check=False)


def assert_clean_error(r: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    """The contract of every CLI mistake: the exit code, no traceback, and a message naming the thing."""
    assert r.returncode == code, f"exit {r.returncode} (wanted {code})\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    text = r.stderr + r.stdout
    for n in needles:
        assert n in text, f"{n!r} not in the output:\n{text}"
