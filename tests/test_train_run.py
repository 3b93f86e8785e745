"""Short real training runs: every run-directory file, exact resume, eval, safe loading."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from simreal.train.checkpoint import CheckpointError, CheckpointStore, verify
from simreal.train.config import parse_set, resolve
from simreal.train.layout import RunPaths
from simreal.train.normalizer import Normalizer
from simreal.train.run import RunError, resume, train
from simreal.train.sb3 import UntrustedContentError
from simreal.train.snapshot import load_run

REPO = Path(__file__).resolve().parents[1]
FAST = ["torch_threads=1", "eval.episodes=1", "log.tensorboard_every=1",
        "env.kwargs.max_episode_steps=50"]             # Pendulum: an episode every 50 steps
PPO_SET = FAST + ["n_envs=2", "hyperparams.n_steps=32", "hyperparams.batch_size=32",
                  "hyperparams.n_epochs=1", "policy.net_arch=[8,8]", "timesteps=256",
                  "eval.every=128", "checkpoint.every=64", "checkpoint.keep=10"]
SAC_SET = FAST + ["hyperparams.learning_starts=40", "hyperparams.batch_size=16",
                  "hyperparams.buffer_size=1000", "policy.net_arch=[8,8]", "timesteps=160",
                  "eval.every=80", "checkpoint.every=80", "checkpoint.keep=10"]


def tiny(robot: str, algo: str, items: list[str]):
    return resolve(robot, algo, [("--set", parse_set(items))])


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ppo") / "run"
    summary = train(tiny("Pendulum-v1", "ppo", PPO_SET), out, progress=False)
    return out, summary


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sac") / "run"
    summary = train(tiny("Pendulum-v1", "sac", SAC_SET), out, progress=False)
    return out, summary


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def check_run_dir(root: Path, algo: str, steps: int) -> None:
    from simreal.train.config import load_resolved

    p = RunPaths(root)

    assert load_resolved(p.config).algo == algo
    run = json.loads(p.run_json.read_text())
    assert {"robot", "algo", "seed", "env_kwargs", "git", "sessions"} <= set(run)
    m = rows(p.metrics)
    assert m, "no episodes logged"
    assert {"timesteps", "wall_time_s", "return", "forward_velocity", "fell"} <= set(m[0])
    t = [int(r["timesteps"]) for r in m]
    assert t == sorted(t) and t[-1] <= steps
    assert [int(r["episode"]) for r in m] == list(range(1, len(m) + 1))
    e = rows(p.evaluations)
    assert e and int(e[-1]["timesteps"]) == steps
    assert list(p.tensorboard.glob("events.out.tfevents.*"))
    latest = CheckpointStore(p.checkpoints).latest_valid()
    assert latest.step == steps
    assert {"policy.pt", "optimizer.pt", "normalizer.json", "state.json", "manifest.json"} <= \
        {f.name for f in latest.path.iterdir()}
    verify(CheckpointStore(p.best).latest_valid().path)
    norm = Normalizer.load(p.normalizer)
    assert norm.norm_obs and norm.obs_count > steps / 2
    assert p.curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(p.summary.read_text())
    assert summary["timesteps"] == steps and summary["final_eval"]["episodes"] == 1


def test_ppo_run_writes_every_file(ppo_run):
    root, summary = ppo_run
    check_run_dir(root, "ppo", 256)
    assert summary.timesteps == 256 and not summary.interrupted
    assert "done: Pendulum-v1 ppo 256 steps" in summary.line()
    steps = [int(d.name.split("_")[1]) for d in CheckpointStore(root / "checkpoints").step_dirs()]
    assert steps == [256, 192, 128, 64]     # every 64 steps, at update boundaries


def test_sac_run_writes_every_file_and_the_replay_buffer(sac_run):
    root, _ = sac_run
    check_run_dir(root, "sac", 160)
    ckpt = CheckpointStore(root / "checkpoints").latest_valid()
    with np.load(ckpt.path / "replay_buffer.npz", allow_pickle=False) as z:
        assert int(z["pos"]) == 160 and z["observations"].shape == (160, 1, 3)


def test_crossq_trains_checkpoints_and_resumes(tmp_path):
    """--algo crossq (sb3-contrib): the run, its replay buffer and an exact resume, as for SAC."""
    out = tmp_path / "run"
    train(tiny("Pendulum-v1", "crossq", SAC_SET), out, progress=False)
    check_run_dir(out, "crossq", 160)
    summary = resume(out, timesteps=240, progress=False)
    assert summary.timesteps == 240
    ckpt = CheckpointStore(out / "checkpoints").latest_valid()
    with np.load(ckpt.path / "replay_buffer.npz", allow_pickle=False) as z:
        assert int(z["pos"]) == 240                       # the resumed run kept the first 160 rows
    assert type(load_run(out).model).__name__ == "CrossQ"


def _state(run: Path) -> dict:
    return json.loads((CheckpointStore(run / "checkpoints").latest_valid().path / "state.json").read_text())


def test_resume_restores_weights_optimizer_counters_and_buffer(sac_run):
    """The model rebuilt from a checkpoint equals the one that wrote it, bit for bit."""
    from simreal.train.config import load_resolved
    from simreal.train.trainers import make_trainer

    root, _ = sac_run
    cfg = load_resolved(root / "config.yaml")
    ckpt = CheckpointStore(root / "checkpoints").latest_valid()
    trainer = make_trainer(cfg, seed_offset=ckpt.step)
    try:
        state = trainer.restore(ckpt)
        model = trainer.model
        assert model.num_timesteps == state["num_timesteps"] == 160
        saved = torch.load(ckpt.path / "policy.pt", weights_only=True)
        for k, v in model.policy.state_dict().items():
            assert torch.equal(v, saved["state_dicts"]["policy"][k]), k
        assert torch.equal(model.log_ent_coef.detach(), saved["variables"]["log_ent_coef"])
        opt = torch.load(ckpt.path / "optimizer.pt", weights_only=True)
        restored = model.actor.optimizer.state_dict()["state"]
        assert restored and all(torch.equal(restored[i]["exp_avg"], s["exp_avg"])
                                for i, s in opt["state_dicts"]["actor.optimizer"]["state"].items())
        assert model.replay_buffer.pos == 160 and not model.replay_buffer.full
        with np.load(ckpt.path / "replay_buffer.npz") as z:
            assert np.array_equal(model.replay_buffer.observations[:160], z["observations"])
        norm = Normalizer.load(ckpt.path / "normalizer.json")
        assert np.allclose(trainer.vecnorm.obs_rms.mean, norm.obs_mean)
    finally:
        trainer.close()


def test_resume_continues_the_step_count_exactly(ppo_run, tmp_path):
    run = copy_run(ppo_run[0], tmp_path / "run")
    before = rows(run / "metrics.csv")
    summary = resume(run, timesteps=384, progress=False)
    assert summary.timesteps == 384 and _state(run)["num_timesteps"] == 384
    after = rows(run / "metrics.csv")
    assert after[: len(before)] == before                   # history untouched
    new = after[len(before):]
    assert new and int(new[0]["timesteps"]) > 256            # no repeat
    assert [int(r["episode"]) for r in after] == list(range(1, len(after) + 1))
    assert float(new[0]["wall_time_s"]) >= float(before[-1]["wall_time_s"])
    assert [int(r["timesteps"]) for r in rows(run / "evaluations.csv")] == [128, 256, 384]
    assert len(json.loads((run / "run.json").read_text())["sessions"]) == 2
    check_run_dir(run, "ppo", 384)


def test_a_robot_run_on_the_batched_env_resumes_exactly(tmp_path):
    """The default robot env (batched): a run stopped at a checkpoint continues its step count,
    episode numbering and evaluations as a DummyVecEnv run does (the test above)."""
    from simreal.train.config import load_resolved
    from simreal.train.trainers import make_trainer

    sets = ["torch_threads=1", "eval.episodes=1", "log.tensorboard_every=1", "n_envs=4",
            "env.kwargs.episode_seconds=0.3", "hyperparams.n_steps=16", "hyperparams.batch_size=64",
            "hyperparams.n_epochs=1", "policy.net_arch=[8,8]", "timesteps=128", "eval.every=64",
            "checkpoint.every=64", "checkpoint.keep=10", "eval.command=[0.4,0.0]"]
    run = tmp_path / "run"
    train(tiny("quadruped", "ppo", sets), run, progress=False)
    cfg = load_resolved(run / "config.yaml")
    trainer = make_trainer(cfg, seed_offset=0)
    assert type(trainer.venv.unwrapped).__name__ == "BatchedVecEnv"
    trainer.close()
    before = rows(run / "metrics.csv")
    summary = resume(run, timesteps=192, progress=False)
    assert summary.timesteps == 192 and _state(run)["num_timesteps"] == 192
    after = rows(run / "metrics.csv")
    assert after[: len(before)] == before and int(after[len(before)]["timesteps"]) > 128
    assert [int(r["episode"]) for r in after] == list(range(1, len(after) + 1))
    assert [int(r["timesteps"]) for r in rows(run / "evaluations.csv")] == [64, 128, 192]
    check_run_dir(run, "ppo", 192)


def test_init_from_starts_a_new_run_from_another_runs_weights(ppo_run, tmp_path):
    """Fine-tuning: weights and observation statistics come over; counters, optimizer and the
    hyperparameters are the new run's own."""
    source, _ = ppo_run
    src_ckpt = CheckpointStore(source / "best").latest_valid()     # a run dir means its best
    cfg = tiny("Pendulum-v1", "ppo", PPO_SET + ["timesteps=64", "eval.every=0",
                                                "hyperparams.learning_rate=1e-5"])
    run = tmp_path / "ft"
    seen = {}

    from simreal.train import trainers
    real = trainers.SB3Trainer.init_weights

    def spy(self, ckpt):
        real(self, ckpt)
        seen["params"] = {k: v.clone() for k, v in self.model.policy.state_dict().items()}
        seen["obs_mean"] = self.vecnorm.obs_rms.mean.copy()
        seen["steps"] = self.model.num_timesteps

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainers.SB3Trainer, "init_weights", spy)
        summary = train(cfg, run, progress=False, init_from=source)
    saved = torch.load(src_ckpt.path / "policy.pt", weights_only=True)["state_dicts"]["policy"]
    assert all(torch.equal(seen["params"][k], v) for k, v in saved.items())
    assert np.allclose(seen["obs_mean"], Normalizer.load(src_ckpt.path / "normalizer.json").obs_mean)
    assert seen["steps"] == 0 and summary.timesteps == 64 and _state(run)["num_timesteps"] == 64
    info = json.loads((run / "run.json").read_text())["init_from"]
    assert info["step"] == src_ckpt.step and info["checkpoint"] == str(src_ckpt.path.resolve())


def test_init_from_refuses_another_network_or_robot(ppo_run, tmp_path):
    source, _ = ppo_run
    wider = tiny("Pendulum-v1", "ppo", PPO_SET + ["policy.net_arch=[16,16]"])
    with pytest.raises(CheckpointError, match="same network"):
        train(wider, tmp_path / "a", progress=False, init_from=source)
    other = tiny("MountainCarContinuous-v0", "ppo", PPO_SET)
    with pytest.raises(CheckpointError, match="same robot"):
        train(other, tmp_path / "b", progress=False, init_from=source)
    grown = copy_run(source, tmp_path / "grown")       # as if robot.yaml's observation had changed
    store = CheckpointStore(grown / "best", keep=1)
    old = store.latest_valid()

    def write_grown(d: Path) -> None:                   # a valid checkpoint, saved the usual way
        for f in ("policy.pt", "state.json"):
            shutil.copy(old.path / f, d / f)
        norm = json.loads((old.path / "normalizer.json").read_text())
        norm["obs_mean"], norm["obs_var"] = norm["obs_mean"] + [0.0], norm["obs_var"] + [1.0]
        (d / "normalizer.json").write_text(json.dumps(norm))
    store.save(old.step, write_grown)
    with pytest.raises(CheckpointError, match="same observation; the checkpoint's has 4 values"):
        train(tiny("Pendulum-v1", "ppo", PPO_SET), tmp_path / "d", progress=False, init_from=grown)
    with pytest.raises(RunError, match="no such run directory"):
        train(wider, tmp_path / "c", progress=False, init_from=tmp_path / "missing")
    assert not any((tmp_path / d).exists() for d in "abcd")   # refused before writing anything


def test_resume_after_a_crash_drops_rows_past_the_checkpoint(ppo_run, tmp_path):
    """A kill after the rows of step 256 were written but before its checkpoint completed."""
    run = copy_run(ppo_run[0], tmp_path / "run")
    shutil.rmtree(run / "checkpoints" / "step_0000000256")   # the checkpoint never finished
    full = rows(run / "metrics.csv")
    resume(run, timesteps=384, progress=False)               # 192 -> 384: new episodes
    after = rows(run / "metrics.csv")
    kept = [r for r in full if int(r["timesteps"]) <= 192]
    assert after[: len(kept)] == kept
    t = [int(r["timesteps"]) for r in after]
    assert t == sorted(t) and t[len(kept)] > 192 and t[-1] <= 384
    assert [int(r["episode"]) for r in after] == list(range(1, len(after) + 1))
    assert _state(run)["num_timesteps"] == 384


def test_resume_skips_a_corrupted_latest_checkpoint(ppo_run, tmp_path):
    run = copy_run(ppo_run[0], tmp_path / "run")
    f = run / "checkpoints" / "step_0000000256" / "policy.pt"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x10
    f.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="step_0000000256.*sha256 mismatch"):
        resume(run, progress=False)
    assert (run / "checkpoints" / "stale-step_0000000256").is_dir()   # set aside, not reused
    assert _state(run)["num_timesteps"] == 256


def test_resume_with_every_checkpoint_damaged_is_a_clear_error(ppo_run, tmp_path):
    run = copy_run(ppo_run[0], tmp_path / "run")
    for d in (run / "checkpoints").glob("step_*"):
        (d / "state.json").write_text("{}")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="no valid checkpoint"):
        resume(run, progress=False)


def test_eval_cli_reports_json(ppo_run, capsys):
    from simreal.cli import main

    assert main(["eval", str(ppo_run[0]), "--episodes", "2", "--json", "--no-randomize"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["episodes"] == 2 and out["mean_length"] == 50
    assert {"mean_return", "mean_forward_velocity", "mean_tracking_error", "fall_rate"} <= set(out)
    assert out["checkpoint"].endswith(tuple(f"step_{s:010d}" for s in (128, 256)))


def test_eval_matches_the_training_evaluation(ppo_run):
    """Same seeds, same policy: `simreal eval` reproduces the figure logged during training."""
    from simreal.train.evaluate import evaluate_run

    root = ppo_run[0]
    result, source = evaluate_run(root, episodes=1, checkpoint="latest")
    logged = {int(r["timesteps"]): float(r["mean_return"]) for r in rows(root / "evaluations.csv")}
    assert result.mean_return == pytest.approx(logged[source["step"]], rel=1e-5)


@pytest.mark.parametrize("fixture", ["ppo_run", "sac_run"])
def test_deterministic_actor_matches_predict(fixture, request):
    from simreal.train.policy_module import deterministic_actor

    loaded = load_run(request.getfixturevalue(fixture)[0])
    actor = deterministic_actor(loaded.model)
    obs = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32) * 3
    with torch.no_grad():
        ours = actor(torch.from_numpy(obs)).numpy()
    theirs = loaded.model.predict(obs, deterministic=True)[0]
    assert np.allclose(ours, theirs, atol=1e-5)
    assert np.all(ours <= 2.0) and np.all(ours >= -2.0)   # Pendulum's torque bounds


def test_pickle_payload_in_a_checkpoint_is_refused_and_never_runs(ppo_run, tmp_path):
    run = copy_run(ppo_run[0], tmp_path / "run")
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    store = CheckpointStore(run / "best", keep=1)
    good = store.latest_valid().path

    def write(d: Path) -> None:
        for f in good.iterdir():
            if f.name != "manifest.json":
                shutil.copy(f, d / f.name)
        torch.save({"state_dicts": {"policy": Payload()}, "variables": {}}, d / "policy.pt")
    store.save(10_000, write)       # a well-formed manifest: only the content is hostile
    with pytest.raises(UntrustedContentError, match="refusing to load"):
        load_run(run, checkpoint="best")
    assert not marker.exists()


def test_sb3_zip_needs_explicit_trust(ppo_run, tmp_path, capsys):
    from simreal.cli import main

    run = copy_run(ppo_run[0], tmp_path / "run")
    loaded = load_run(run)
    loaded.model.save(run / "model.zip")
    with pytest.raises(UntrustedContentError, match="--trust-checkpoint"):
        load_run(run / "model.zip")
    assert main(["eval", str(run / "model.zip"), "--episodes", "1"]) == 2
    assert "--trust-checkpoint" in capsys.readouterr().err
    trusted = load_run(run / "model.zip", trust=True).model
    for k, v in loaded.model.policy.state_dict().items():
        assert torch.equal(v, trusted.policy.state_dict()[k]), k


def test_cli_rejects_unknown_key_and_conflicting_resume_flags(ppo_run, tmp_path, capsys):
    from simreal.cli import main

    out = tmp_path / "never"
    assert main(["train", "Pendulum-v1", "--algo", "ppo", "--out", str(out),
                 "--set", "hyperparams.n_step=64"]) == 2
    assert "hyperparams.n_step: unknown key" in capsys.readouterr().err
    assert not out.exists()
    assert main(["train", "--resume", str(ppo_run[0]), "--seed", "3"]) == 2
    assert "only --timesteps may change" in capsys.readouterr().err
    assert main(["train", "Pendulum-v1", "--algo", "ppo", "--out", str(ppo_run[0])]) == 2
    assert "already holds a run" in capsys.readouterr().err


# ---- robots and our own algorithms -------------------------------------------------------------
def _has_robot(name: str) -> bool:
    from simreal.robot.registry import list_robots

    return name in list_robots() and (REPO / "simreal" / "envs" / "locomotion.py").is_file()


@pytest.mark.skipif(not _has_robot("quadruped"), reason="quadruped env not available")
def test_quadruped_short_run_logs_reward_terms_and_velocity(tmp_path):
    items = ["torch_threads=1", "eval.episodes=1", "log.tensorboard_every=1", "n_envs=2",
             "env.kwargs.episode_seconds=0.5", "hyperparams.n_steps=25", "hyperparams.batch_size=50",
             "hyperparams.n_epochs=1", "policy.net_arch=[8,8]", "timesteps=100", "eval.every=100",
             "checkpoint.every=100"]
    train(tiny("quadruped", "ppo", items), tmp_path / "run", progress=False)
    m = rows(tmp_path / "run" / "metrics.csv")
    terms = [c for c in m[0] if c.startswith("r_")]
    assert terms and "r_tracking_lin_vel" in terms
    for r in m:   # the logged terms sum to the logged return (the env's contract, kept by us)
        assert sum(float(r[c]) for c in terms) == pytest.approx(float(r["return"]), rel=1e-4, abs=1e-4)
    assert all(r["forward_velocity"] != "" and r["tracking_error"] != "" for r in m)
    e = rows(tmp_path / "run" / "evaluations.csv")[-1]
    assert e["mean_forward_velocity"] != "" and e["mean_tracking_error"] != ""


@pytest.mark.skipif(not _has_robot("quadruped"), reason="quadruped env not available")
def test_eval_cli_writes_a_video(tmp_path):
    """In a fresh process: MuJoCo picks its GL backend when first imported."""
    import os
    import subprocess
    import sys

    pytest.importorskip("imageio_ffmpeg")
    items = ["torch_threads=1", "eval.episodes=1", "n_envs=1", "env.kwargs.episode_seconds=0.2",
             "env.kwargs.width=64", "env.kwargs.height=48", "hyperparams.n_steps=10",
             "hyperparams.batch_size=10", "hyperparams.n_epochs=1", "policy.net_arch=[8]",
             "timesteps=10", "eval.every=0", "checkpoint.every=0"]
    train(tiny("quadruped", "ppo", items), tmp_path / "run", progress=False)
    clip = tmp_path / "clip.mp4"
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "simreal.cli", "eval", str(tmp_path / "run"),
                           "--episodes", "1", "--video", str(clip)],
                          capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0 and "GL" in proc.stderr:
        pytest.skip(f"no offscreen OpenGL here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    assert clip.stat().st_size > 1000 and f"video: {clip}" in proc.stdout


@pytest.mark.skipif(not (REPO / "simreal" / "algos" / "api.py").is_file(),
                    reason="simreal.algos.api not available")
def test_own_algorithm_trains_resumes_and_evaluates(tmp_path):
    from simreal.train.evaluate import evaluate_run

    items = FAST + ["n_envs=2", "hyperparams.n_steps=32", "hyperparams.hidden=[8,8]",
                    "timesteps=128", "eval.every=64", "checkpoint.every=64"]
    run = tmp_path / "run"
    train(tiny("Pendulum-v1", "ppo_simreal", items), run, progress=False)
    assert (CheckpointStore(run / "checkpoints").latest_valid().path / "agent.pt").is_file()
    resume(run, timesteps=192, progress=False)
    assert _state(run)["num_timesteps"] == 192
    t = [int(r["timesteps"]) for r in rows(run / "metrics.csv")]
    assert t == sorted(t) and t[-1] <= 192
    result, _ = evaluate_run(run, episodes=1)
    assert result.mean_length == 50
    ft = tmp_path / "ft"       # fine-tuning one: weights come over, its counters start at zero
    train(tiny("Pendulum-v1", "ppo_simreal", items[:-3] + ["timesteps=64", "eval.every=0"]), ft,
          progress=False, init_from=run)
    assert _state(ft)["num_timesteps"] == 64


SHIPPED = REPO / "assets" / "policies"
SHIPPED_ROBOTS = sorted(p.parent.name for p in SHIPPED.glob("*/policy.json"))


@pytest.mark.skipif(not SHIPPED_ROBOTS, reason="no shipped policy bundle in assets/policies/")
@pytest.mark.parametrize("robot", SHIPPED_ROBOTS)
def test_shipped_policy_walks_forward(robot):
    """A random policy averages ~0.03 m/s (commands are >= 0.1 m/s); walking means > 0.15 m/s."""
    from simreal.train.evaluate import evaluate_path

    result, _ = evaluate_path(SHIPPED / robot, episodes=3, randomize=True, command=(0.3, 0.0))
    assert result.mean_forward_velocity > 0.15
    assert result.fall_rate <= 1 / 3


@pytest.mark.parametrize("vec_env", ["dummy", pytest.param("subproc", marks=pytest.mark.slow)])
def test_ctrl_c_stops_saves_and_resumes(tmp_path, vec_env):
    """Ctrl-C (SIGINT to the whole process group, env workers included): the run stops after
    the current step, saves a checkpoint at that exact step, and resumes from it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    sets = PPO_SET + ["timesteps=1000000", f"env.vec_env={vec_env}", "eval.every=0"]
    proc = subprocess.Popen([sys.executable, "-m", "simreal.cli", "train", "Pendulum-v1", "--algo",
                             "ppo", "--out", str(run), "--no-progress", "--set", *sets],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not ((run / "checkpoints" / "latest").is_file() and (run / "metrics.csv").is_file()):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint written in time"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert out.startswith("stopped:") and "simreal train --resume" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] and _state(run)["num_timesteps"] == summary["timesteps"]
    step = summary["timesteps"]
    before = rows(run / "metrics.csv")
    assert int(before[-1]["timesteps"]) <= step
    resume(run, timesteps=step + 128, progress=False)
    assert _state(run)["num_timesteps"] >= step + 128
    after = rows(run / "metrics.csv")
    assert after[:len(before)] == before and int(after[len(before)]["timesteps"]) > step
