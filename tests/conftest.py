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


# --------------------------------------------------------------------------- shared robot fixtures

@pytest.fixture(scope="session")
def spec():
    """The quadruped's validated spec (read-only: RobotSpec is frozen)."""
    from simreal.robot.spec import load_robot

    return load_robot("quadruped")


def tiny_bundle(out: Path, spec, *, seed: int = 0, hidden: int = 32, stand_still: bool = False) -> Path:
    """A small random policy exported as a real bundle (ONNX, contract, probe): what tests load.

    stand_still: near-zero actions and no normalizer, so a robot running it stands at its default
    pose; otherwise a random normalizer and actions of ordinary size, to exercise the graph."""
    from torch import nn

    from simreal.export.bundle import export_bundle, training_fields
    from simreal.robot.observation import layout_for
    from simreal.train.normalizer import Normalizer

    import numpy as np

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    d, n = layout_for(spec).size, spec.n_joints
    actor = nn.Sequential(nn.Linear(d, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, n))
    norm = None
    if stand_still:
        with torch.no_grad():
            actor[-1].weight.mul_(0.05)
            actor[-1].bias.zero_()
    else:
        norm = Normalizer(norm_obs=True, obs_mean=rng.normal(size=d).tolist(),
                          obs_var=rng.uniform(0.2, 3.0, d).tolist(), clip_obs=5.0)
    obs = (rng.normal(size=(400, d)) * (0.5 if stand_still else 2)).astype(np.float32)
    export_bundle(actor, norm, spec, out, obs, git={}, latency_calls=20,
                  training=training_fields(spec, algo="untrained" if stand_still else "test", timesteps=0,
                                           seed=seed, randomize=not stand_still))
    return Path(out)


@pytest.fixture
def serve_mock(spec):
    """serve_mock(hook=..., faults=..., transport=..., simulated=...) -> a MockRobot of the quadruped
    served from a thread over a real pty (simreal.mock.threaded), closed after the test. Lockstep,
    except when it plays hardware (simulated=False): a real robot's clock always runs."""
    from simreal.mock.faults import parse_faults
    from simreal.mock.gap import load_gap
    from simreal.mock.robot import MockRobot, RobotOptions
    from simreal.mock.threaded import ThreadedMock

    made: list = []

    def _serve(*, hook=None, faults: str | None = None, transport: str = "pty", simulated: bool = True,
               link_timeout_s: float = 0.05) -> ThreadedMock:
        schedule = parse_faults(faults)
        robot = MockRobot(spec, load_gap("nominal")[1], schedule,
                          options=RobotOptions(watchdog_s=0.0, lockstep=simulated, simulated=simulated))
        made.append(ThreadedMock(robot, schedule, transport=transport, hook=hook, link_timeout_s=link_timeout_s))
        return made[-1]
    yield _serve
    for m in made:
        m.close()
