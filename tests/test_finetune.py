"""Fine-tuning on the robot (simreal.finetune), on the lockstep mock: a few hundred steps learn
and checkpoint; a kill mid-episode resumes with exact counts; a vanished robot ends the episode
safely and the run resumes when it is back; non-finite data never reaches the learner or a save."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from simreal.bundle.shipped import shipped_bundle
from simreal.finetune.learner import NonFiniteUpdate, ResidualLearner
from simreal.finetune.session import STATE_FILE, episode_transitions, finetune, _RowTruth
from simreal.finetune.velocity import Velocity
from simreal.mock.faults import parse_faults
from simreal.mock.gap import load_gap
from simreal.mock.robot import MockRobot, RobotOptions
from simreal.mock.threaded import ThreadedMock
from simreal.robot.spec import load_robot
from simreal.train.checkpoint import CheckpointStore

BUNDLE = str(shipped_bundle("quadruped"))
FAST = dict(episode_s=2.0, batch_size=32, utd=0.25)


def mock(faults=None, gap="worn"):
    spec = load_robot("quadruped")
    return MockRobot(spec, load_gap(gap)[1], parse_faults(faults), 0, RobotOptions(lockstep=True, watchdog_s=0))


def latest_state(out: Path) -> dict:
    ckpt = CheckpointStore(out / "checkpoints").latest_valid()
    return json.loads((ckpt.path / STATE_FILE).read_text())


def test_a_few_hundred_steps_learn_checkpoint_and_keep_the_residual_bounded(tmp_path):
    with ThreadedMock(mock()) as m:
        c = finetune(BUNDLE, m.url, tmp_path, steps=250, **FAST)
    assert c.episodes >= 3 and c.transitions >= 250 and c.updates > 0 and c.refused <= c.episodes
    st = latest_state(tmp_path)
    assert st["counters"]["transitions"] == c.transitions and st["learner"]["num_timesteps"] == c.transitions
    assert st["provenance"]["velocity"] == "ground_truth" and st["provenance"]["privileged_velocity"]
    log = [json.loads(line) for line in (tmp_path / "episodes" / "00000.jsonl").read_text().splitlines()[1:]]
    actions = [r for r in log if r.get("phase") == "policy" and "action" in r]
    assert actions, "the episode log holds the policy's cycles"


def test_resume_after_a_kill_mid_episode_continues_with_exact_counts(tmp_path):
    """SIGKILL of `simreal finetune` while its second episode runs: the first is checkpointed, the
    second was never counted; --resume goes on from exactly there."""
    from simreal.mock.process import spawn

    out = tmp_path / "run"
    with spawn("quadruped", gap="worn", lockstep=True) as m:
        p = subprocess.Popen([sys.executable, "-m", "simreal.cli", "finetune", BUNDLE, "--port", m.port,
                              "--steps", "10000", "--episode-seconds", "2", "--out", str(out), "--yes"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not (out / "episodes" / "00001.jsonl").exists():
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.poll() is not None else ""
            time.sleep(0.05)
        time.sleep(0.3)                         # inside episode 2
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        first = latest_state(out)["counters"]
        assert first["episodes"] == 1
        c = finetune(BUNDLE, m.port, out, steps=first["transitions"] + 50, resume=True, **FAST)
    assert c.episodes >= 2 and c.episode_log[:1] == first["episode_log"]
    st = latest_state(out)
    assert st["learner"]["num_timesteps"] == c.transitions == sum(e["steps"] for e in c.episode_log)
    with pytest.raises(FileExistsError, match="--resume"):
        finetune(BUNDLE, "/dev/null", out, steps=10)


def test_a_robot_that_vanishes_ends_the_episode_safely_and_the_run_resumes_when_it_is_back(tmp_path):
    from simreal.deploy.plan import StartRefused

    with ThreadedMock(mock(faults="disconnect_at=3.5")) as m:     # mid second episode (2 s each + start)
        with pytest.raises(StartRefused):
            finetune(BUNDLE, m.url, tmp_path, steps=10_000, **FAST)
    before = latest_state(tmp_path)["counters"]
    assert before["episodes"] >= 1
    ep = [json.loads(line) for line in (tmp_path / "episodes" / f"{before['episodes'] - 1:05d}.jsonl")
          .read_text().splitlines()[1:]]
    trip = [r for r in ep if r.get("kind") == "safe_stop"]
    assert trip and trip[0]["cause"] in ("link_lost", "link_failed")    # the mock is gone: a safe stop
    with ThreadedMock(mock()) as m:                                # the robot is back
        c = finetune(BUNDLE, m.url, tmp_path, steps=before["transitions"] + 30, resume=True, **FAST)
    assert c.episodes == before["episodes"] + 1 and c.transitions >= before["transitions"] + 30


def test_a_non_finite_reward_is_refused_and_the_weights_stay_finite():
    rows = [{"phase": "policy", "obs": [0.0] * 4, "command": [0.3, 0.0],
             "state": {"ts": 0.02 * i, "status": 0, "errors": 0, "q": [0.0] * 8, "dq": [0.0] * 8,
                       "quat": [1.0, 0, 0, 0], "gyro": [0, 0, 0], "accel": [0, 0, 9.8]}} for i in range(6)]

    class NaNThird:
        name, privileged, n = "test", False, 0

        def velocity(self, state):
            self.n += 1
            return Velocity(float("nan") if self.n == 3 else 0.3, 0.0, 0.0)

    trans, refused = episode_transitions(rows, [np.zeros(8)] * 6, NaNThird(), {}, fell=False, truth=_RowTruth())
    assert refused == 1 and len(trans) == 4 and all(np.isfinite(t[2]) for t in trans)
    learner = ResidualLearner(4, 8, batch_size=8)
    with pytest.raises(ValueError, match="reward is not finite"):
        learner.add(np.zeros(4), np.zeros(8), float("nan"), np.zeros(4), False)
    assert learner.buffer_len == 0
    for _ in range(16):
        learner.add(np.random.randn(4), np.zeros(8), 1.0, np.random.randn(4), False)
    learner.model.replay_buffer.rewards[:16] = np.inf              # poison behind the guard's back
    before = [p.detach().clone() for p in learner.model.policy.parameters()]
    with pytest.raises(NonFiniteUpdate):
        learner.update(4)
    assert learner.finite()
    assert all(torch_equal(a, b) for a, b in zip(before, learner.model.policy.parameters()))


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_finetune_cli_refuses_bad_arguments(tmp_path):
    from conftest import run_simreal

    r = run_simreal("finetune", BUNDLE, "--port", "/dev/null")
    assert r.returncode == 2 and "--steps" in r.stderr
    r = run_simreal("finetune", BUNDLE, "--port", str(tmp_path / "nope"), "--steps", "10", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr


def test_episodes_that_give_no_transitions_stop_the_run(tmp_path):
    """A tracker nobody feeds: every cycle is refused; three such episodes end the run (exit 1)."""
    from simreal.finetune.session import MAX_EMPTY_EPISODES, Stalled

    with ThreadedMock(mock()) as m:
        with pytest.raises(Stalled, match="gave no transition"):
            finetune(BUNDLE, m.url, tmp_path, steps=100, velocity="tracker:127.0.0.1:0", episode_s=0.5,
                     batch_size=32)
    st = latest_state(tmp_path)
    assert st["counters"]["episodes"] == MAX_EMPTY_EPISODES and st["counters"]["transitions"] == 0
    assert st["counters"]["refused"] > 0 and st["provenance"]["velocity"] == "tracker"
