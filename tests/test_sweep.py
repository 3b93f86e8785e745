"""Issue 18: `simreal sweep SPEC` on a local Ray instance: tiny sweeps (a few hundred steps per
trial) that produce the table, trials.csv, best.yaml and the plots; a failing trial; bad specs
refused before Ray starts; a trial started again continues its run."""
from __future__ import annotations

import csv
import json

import pytest
import yaml

from conftest import assert_clean_error, run_simreal

TINY = {"robot": "quadruped", "algo": "ppo", "timesteps": 512, "seeds": [0], "metric": "eval_return",
        "set": {"n_envs": 2, "hyperparams.n_steps": 64, "hyperparams.batch_size": 64, "hyperparams.n_epochs": 1,
                "eval.every": 256, "eval.episodes": 1, "checkpoint.every": 256,
                "env.kwargs.episode_seconds": 1.0}}


def _spec(tmp_path, **fields) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**TINY, **fields}))
    return str(path)


@pytest.fixture(scope="module")
def ray_installed():
    pytest.importorskip("ray", reason="the cluster extra (ray[tune]) is not installed: pip install 'simreal[cluster]'")


def test_a_grid_sweep_reports_every_trial_and_survives_a_failing_one(tmp_path, ray_installed):
    spec = _spec(tmp_path, space={"hyperparams.learning_rate": {"grid": [1e-4, 1e-3]},
                                  # an unknown group: the env refuses it when the trial builds it
                                  "env.kwargs.randomize_groups": {"grid": [None, ["gravity"]]}},
                 metric="mock_velocity", mock_eval={"profile": "nominal", "seconds": 1.0})
    out = tmp_path / "out"
    r = run_simreal("sweep", spec, "--out", str(out), timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 4
    assert sorted(row["status"] for row in rows) == ["done", "done", "failed", "failed"]
    assert all(row["status"] == "failed" for row in rows if "gravity" in row["env.kwargs.randomize_groups"])
    assert all(float(row["eval_return"]) > 0 and row["timesteps"] == "512" and row["mock_velocity"] != ""
               for row in rows if row["status"] == "done")
    assert "4 trials (2 failed)" in r.stdout
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["robot"] == "quadruped" and best["hyperparams"]["learning_rate"] in (1e-4, 1e-3)
    assert best["env"]["kwargs"]["randomize_groups"] is None and best["n_envs"] == 2
    for name in ("learning_curves.png", "metric_vs_hyperparams_learning_rate.png",
                 "metric_vs_env_kwargs_randomize_groups.png"):
        assert (out / name).stat().st_size > 10_000, name
    for row in rows:                                 # each trial is an ordinary run directory
        if row["status"] == "done":
            assert (out / "trials" / row["trial"] / "evaluations.csv").is_file()
    # what best.yaml says is a config `simreal train --config` accepts
    p = run_simreal("train", "quadruped", "--algo", "ppo", "--config", str(out / "best.yaml"), "--print-config")
    assert p.returncode == 0 and "learning_rate" in p.stdout, p.stderr
    assert run_simreal("sweep", spec, "--out", str(out)).returncode == 2      # never over a finished sweep
    again = run_simreal("sweep", spec, "--out", str(out), "--resume", timeout=300)     # Tuner.restore
    assert again.returncode == 0 and "4 trials (2 failed)" in again.stdout, again.stderr[-2000:]


@pytest.mark.slow      # ~25 s alone, ~50 s on a loaded host; the grid sweep above covers the Ray path by default
def test_optuna_with_asha_runs_through(tmp_path, ray_installed):
    spec = _spec(tmp_path, search="optuna", num_samples=2, scheduler="asha", grace_steps=256,
                 space={"hyperparams.learning_rate": {"loguniform": [1e-4, 1e-3]}},
                 mock_eval={"profile": "worn", "seconds": 1.0})
    out = tmp_path / "out"
    r = run_simreal("sweep", spec, "--out", str(out), "--set", "timesteps=768", timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader((out / "trials.csv").open()))
    lrs = [float(row["hyperparams.learning_rate"]) for row in rows]
    assert len(rows) == 2 and all(1e-4 <= x <= 1e-3 for x in lrs) and lrs[0] != lrs[1]
    assert json.loads((out / "spec.json").read_text())["timesteps"] == 768        # --set applied
    done = [row for row in rows if row["status"] == "done"]          # ASHA may have stopped one
    assert done
    for row in done:             # exported and walked on the lockstep mock under `worn`
        assert abs(float(row["mock_velocity"])) < 1.0 and row["mock_fell"] in ("0.0", "1.0")
        assert (out / "trials" / row["trial"] / "bundle" / "policy.onnx").is_file()
        assert (out / "trials" / row["trial"] / "mock-worn.jsonl").is_file()


@pytest.mark.parametrize("space, needle", [
    ({"hyperparams.learnin_rate": {"grid": [1e-4]}}, "learnin_rate"),
    ({"hyperparams.learning_rate": {"grid": []}}, "empty list"),
    ({"hyperparams.learning_rate": {"uniform": [1e-4, float("inf")]}}, "finite"),
    ({"hyperparams.learning_rate": {"loguniform": [1e-3, 1e-4]}}, "below"),
    ({"hyperparams.gamma": {"grid": [0.9, 7]}}, "value 7"),
    ({}, "space"),
])
def test_a_bad_spec_is_refused_before_ray_starts(tmp_path, space, needle):
    out = tmp_path / "out"
    r = run_simreal("sweep", _spec(tmp_path, space=space), "--out", str(out))
    assert_clean_error(r, 2, "spec.yaml", needle)
    assert not out.exists()


def test_spec_rules_and_overrides(tmp_path):
    from simreal.sweep.spec import SpecError, load_spec

    grid = {"space": {"hyperparams.learning_rate": {"grid": [1e-4]}}}
    spec = load_spec(_spec(tmp_path, **grid), {"seeds": 3, "set.n_envs": 4, "timesteps": 1024})
    assert spec.seeds == [0, 1, 2] and spec.set["n_envs"] == 4 and spec.timesteps == 1024
    with pytest.raises(SpecError, match="optuna proposes one configuration"):
        load_spec(_spec(tmp_path, search="optuna", seeds=2,
                        space={"hyperparams.learning_rate": {"uniform": [1e-4, 1e-3]}}))
    with pytest.raises(SpecError, match="grid takes only grid"):
        load_spec(_spec(tmp_path, space={"hyperparams.learning_rate": {"uniform": [1e-4, 1e-3]}}))
    with pytest.raises(SpecError, match="mock_velocity needs a mock_eval"):
        load_spec(_spec(tmp_path, metric="mock_velocity", **grid))


def test_a_trial_started_again_continues_its_run(tmp_path):
    from simreal.sweep.spec import load_spec
    from simreal.sweep.trial import run_trial

    spec = load_spec(_spec(tmp_path, timesteps=256, space={"hyperparams.learning_rate": {"grid": [1e-3]}}))
    config = {"hyperparams.learning_rate": 1e-3, "seed": 0}
    first, second = [], []
    run_trial(config, spec, tmp_path / "out", first.append)
    longer = spec.model_copy(update={"timesteps": 512})
    final = run_trial(config, longer, tmp_path / "out", second.append)
    assert [m["timesteps"] for m in first] == [256, 256]                    # one evaluation, then the end
    assert [m["timesteps"] for m in second] == [512, 512]                   # 256 is not trained again
    assert final["run_dir"] == first[-1]["run_dir"]
    run = json.loads((tmp_path / "out" / "trials" / final["run_dir"].split("/")[-1] / "run.json").read_text())
    assert len(run["sessions"]) == 2 and run["sessions"][1]["resumed_from_step"] == 256
    done = []                                   # complete already: no training, the recorded figures
    again = run_trial(config, longer, tmp_path / "out", done.append)
    assert len(done) == 1 and again["eval_return"] == pytest.approx(final["eval_return"], rel=1e-4)
    assert again["timesteps"] == 512
