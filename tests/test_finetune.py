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
from simreal.bundle.contract import contract_sha256
from simreal.bundle.policy import Policy
from simreal.bundle.shipped import shipped_bundle
from simreal.finetune import BOUND
from simreal.finetune.learner import NonFiniteUpdate, ResidualLearner
from simreal.finetune.session import episode_transitions, finetune, _RowTruth
from simreal.finetune.state import STATE_FILE
from simreal.finetune.velocity import Velocity
from simreal.mock.faults import parse_faults
from simreal.mock.gap import load_gap
from simreal.mock.robot import MockRobot, RobotOptions
from simreal.mock.threaded import ThreadedMock
from simreal.robot.spec import load_robot
from simreal.train.checkpoint import CheckpointStore

BUNDLE = str(shipped_bundle("quadruped"))
FAST = dict(episode_s=2.0, batch_size=32, utd=0.25, sim_warmup=64, actor_delay_s=2.0)


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
    assert c.sim_transitions == 64 and st["counters"]["sim_transitions"] == 64

    # the result is a bundle: the base network plus the residual, with its provenance
    tuned = Policy.load(tmp_path / "bundle")
    r = tuned.contract.residual
    assert r.bound == BOUND and r.finetune.transitions == c.transitions and r.finetune.privileged_velocity
    assert r.finetune.base_sha256 == contract_sha256(BUNDLE) and r.finetune.sim_warmup == 64
    base = Policy.load(BUNDLE)
    obs = np.array([row["obs"] for row in actions], np.float32)
    change = np.abs(tuned.infer_batch(obs)[0] - base.infer_batch(obs)[0])
    assert 0 < change.max() <= BOUND + 1e-6                  # it learned something, within the bound
    # ... that deploys like any bundle
    from simreal.deploy.session import deploy

    with ThreadedMock(mock()) as m:
        summary, _ = deploy(str(tmp_path / "bundle"), m.url, duration_s=1.0, confirm=lambda info: True)
    assert summary["end"] == "duration" and not summary["safe_stops"]
    # a fine-tuned bundle is not fine-tuned again (its export could not hold a second residual)
    from simreal.deploy.plan import StartRefused

    with pytest.raises(StartRefused, match="already fine-tuned"):
        finetune(str(tmp_path / "bundle"), "/dev/null", tmp_path / "again", steps=10)
    # resuming a run that is done only exports again: the robot port is never opened
    import shutil

    shutil.rmtree(tmp_path / "bundle")
    again = finetune(BUNDLE, "/nonexistent/port", tmp_path, steps=250, resume=True, **FAST)
    assert again.transitions == c.transitions and Policy.load(tmp_path / "bundle").contract.residual is not None


def test_resume_after_a_kill_mid_episode_continues_with_exact_counts(tmp_path):
    """SIGKILL of `simreal finetune` while its second episode runs: the first is checkpointed, the
    second was never counted; --resume goes on from exactly there."""
    from simreal.mock.process import spawn

    out = tmp_path / "run"
    with spawn("quadruped", gap="worn", lockstep=True) as m:
        p = subprocess.Popen([sys.executable, "-m", "simreal.cli", "finetune", BUNDLE, "--port", m.port,
                              "--steps", "10000", "--episode-seconds", "2", "--sim-warmup", "64", "--out", str(out), "--yes"],
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

    trans, refused, vx = episode_transitions(rows, [np.zeros(8)] * 6, NaNThird(), {}, fell=False, truth=_RowTruth())
    assert refused == 1 and len(trans) == 4 and all(np.isfinite(t[2]) for t in trans) and vx == pytest.approx(0.3)
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
            finetune(BUNDLE, m.url, tmp_path, steps=100, velocity="tracker:127.0.0.1:0", episode_s=0.5, sim_warmup=0,
                     batch_size=32)
    st = latest_state(tmp_path)
    assert st["counters"]["episodes"] == MAX_EMPTY_EPISODES and st["counters"]["transitions"] == 0
    assert st["counters"]["refused"] > 0 and st["provenance"]["velocity"] == "tracker"


def test_critic_only_updates_leave_the_actor_and_entropy_coefficient_alone():
    rng = np.random.default_rng(0)
    learner = ResidualLearner(10, 3, batch_size=32)
    for _ in range(64):
        learner.add(rng.normal(size=10), rng.uniform(-1, 1, 3), rng.normal(), rng.normal(size=10), False)
    actor = [p.detach().clone() for p in learner.model.actor.parameters()]
    critic = [p.detach().clone() for p in learner.model.critic.parameters()]
    alpha = learner.model.log_ent_coef.detach().clone()
    assert learner.update(5, critic_only=True) == 5
    assert all(torch_equal(a, b) for a, b in zip(actor, learner.model.actor.parameters()))
    assert torch_equal(alpha, learner.model.log_ent_coef)
    assert not all(torch_equal(a, b) for a, b in zip(critic, learner.model.critic.parameters()))
    learner.update(5)
    assert not all(torch_equal(a, b) for a, b in zip(actor, learner.model.actor.parameters()))


def test_the_simulated_warm_up_trains_the_critic_on_the_robot_reward_then_empties_the_buffer():
    from simreal.finetune.residual import ResidualPolicy
    from simreal.finetune.warmup import sim_transitions, warm_up

    spec = load_robot("quadruped")
    base = Policy.load(BUNDLE)
    learner = ResidualLearner(base.obs_dim, spec.n_joints, batch_size=32)
    policy = ResidualPolicy(base, learner, 0.2)
    trans = sim_transitions(policy, spec, 120, (0.35, 0.0))
    assert len(trans) == 120 and not policy.deltas
    rewards = np.array([t[2] for t in trans])
    # the shipped policy walks in simulation: forward tracking near its best (2.0 x exp(-err^2/0.1))
    assert np.isfinite(rewards).all() and rewards[20:].mean() > 1.5
    assert np.abs(np.array([t[1] for t in trans])).max() > 0.05      # it explores
    critic = [p.detach().clone() for p in learner.model.critic.parameters()]
    actor = [p.detach().clone() for p in learner.model.actor.parameters()]
    assert warm_up(policy, spec, 64, (0.35, 0.0), utd=0.5) == 32
    assert learner.buffer_len == 0 and learner.model.num_timesteps == 0
    assert not all(torch_equal(a, b) for a, b in zip(critic, learner.model.critic.parameters()))
    assert all(torch_equal(a, b) for a, b in zip(actor, learner.model.actor.parameters()))


def test_a_training_run_is_exported_first_and_a_finetune_run_points_export_at_itself(tmp_path):
    from conftest import run_simreal
    from simreal.cli import main

    run_dir, out = tmp_path / "run", tmp_path / "ft"
    assert main(["train", "quadruped", "--algo", "ppo", "--timesteps", "256", "--envs", "1", "--out", str(run_dir),
                 "--no-progress", "--set", "hyperparams.n_steps=128", "hyperparams.batch_size=64", "eval.episodes=1",
                 "env.kwargs.episode_seconds=1.0"]) == 0
    with ThreadedMock(mock(gap="nominal")) as m:
        c = finetune(str(run_dir), m.url, out, steps=30, episode_s=1.0, batch_size=16, sim_warmup=0)
    assert c.transitions >= 30
    base = Policy.load(out / "base")
    assert base.contract.training.source and Policy.load(out / "bundle").contract.residual.finetune.base_sha256 == \
        contract_sha256(out / "base")
    r = run_simreal("export", str(out), "--out", str(tmp_path / "b"))
    assert r.returncode != 0 and "fine-tuning run" in r.stderr and "--resume" in r.stderr
    assert not (tmp_path / "b").exists()


def test_the_operator_resets_the_robot_between_episodes_and_q_ends_the_run(tmp_path):
    asked = []

    def ask(prompt):
        asked.append(prompt)
        return "" if len(asked) == 1 else "q"

    with ThreadedMock(mock()) as m:
        c = finetune(BUNDLE, m.url, tmp_path, steps=10_000, reset="operator", ask=ask, episode_s=1.0,
                     batch_size=16, sim_warmup=0)
    assert c.episodes == 2 and len(asked) == 2 and "episode 2" in asked[1] and "q ends the run" in asked[1]
    assert Policy.load(tmp_path / "bundle").contract.residual.finetune.episodes == 2   # exported as it ended


def test_a_stand_up_reset_runs_the_script_as_the_start_ramp_and_asks_only_after_a_fall(tmp_path):
    def ask(prompt):
        raise AssertionError(f"asked without a fall: {prompt}")

    with ThreadedMock(mock()) as m:
        c = finetune(BUNDLE, m.url, tmp_path, steps=80, reset="standup", ask=ask, episode_s=1.0, batch_size=16,
                     sim_warmup=0, export=False)
    # Episodes end by wall time, so a loaded machine gives fewer transitions each: the run stops at
    # the first episode that reaches the 80-step budget, whatever that count is.
    steps = [e["steps"] for e in c.episode_log]
    assert c.episodes >= 2 and c.falls == 0 and sum(steps) >= 80 > sum(steps[:-1])
    rows = [json.loads(x) for x in (tmp_path / "episodes" / "00001.jsonl").read_text().splitlines()[1:]]
    # 1 s + 1 s of script + the 1 s soft start = 150 deadline slots (a loaded host may skip one)
    soft = [r["slot"] for r in rows if r.get("phase") == "soft_start"]
    later = [r["slot"] for r in rows if r.get("phase") in ("settle", "policy")]
    assert soft[0] == 0 and 140 <= max(soft) < 150 <= min(later)
    with pytest.raises(Exception, match="--reset sim: this robot is not simulated"):
        from simreal.finetune.resets import make_reset
        make_reset("sim", load_robot("quadruped"), simulated=False)
