"""`simreal study`: metrics by hand, config handling, and a tiny end-to-end run of both studies."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from simreal.algos.study import load_study_config, solve_point, summarize, with_param


def test_solve_point_by_hand():
    # 50 episodes of return 10, then 500s (CartPole: return = length, so ends = cumsum).
    # A 100-episode window averages >= 475 once it holds n 500s with 500 n + 10 (100 - n) >= 47500,
    # i.e. n >= 95: the window of episodes 46..145, so "solved" at episode 145.
    returns = [10.0] * 50 + [500.0] * 150
    ends = np.cumsum(returns).astype(int).tolist()
    s = solve_point(ends, returns, 475, 100)
    assert s["episodes"] == 145
    assert s["steps"] == 50 * 10 + 95 * 500
    assert s["window_start_steps"] == 45 * 10        # episodes 1..45 came before the window
    assert solve_point(ends[:144], returns[:144], 475, 100) is None
    assert solve_point(ends[:99], returns[:99], 0, 100) is None    # fewer episodes than the window


def test_summary_counts_unsolved_seeds_in_the_median():
    solved = {"algo": "x", "wall_time_s": 1.0, "episode_returns": [500.0] * 100,
              "episode_end_steps": list(range(500, 50_001, 500))}
    late = {**solved, "episode_returns": [10.0] * 100 + [500.0] * 100,
            "episode_end_steps": list(range(10, 1001, 10)) + list(range(1500, 51_001, 500))}
    never = {**solved, "episode_returns": [20.0] * 100, "episode_end_steps": list(range(20, 2001, 20))}
    s = summarize([solved, late, never], 475, 100)["x"]
    assert s["n_seeds"] == 3 and s["n_solved"] == 2
    # medians over [solved, late, inf]: the middle one is the late run
    assert s["episodes_to_threshold"]["median"] == 195
    assert s["episodes_to_threshold"]["min"] == 100
    s2 = summarize([solved, never, never], 475, 100)["x"]
    assert s2["steps_to_threshold"]["median"] is None      # most seeds never got there
    assert s2["final_avg_return"]["per_seed"] == [500.0, 20.0, 20.0]


def test_with_param_maps_onto_each_library():
    cfg = load_study_config()
    a2c = with_param("a2c", cfg["algos"]["a2c"], "ent_coef", 0.05)
    assert a2c["config"]["ent_coef"] == 0.05 and cfg["algos"]["a2c"]["config"]["ent_coef"] == 0.0
    ppo = with_param("ppo_sb3", cfg["algos"]["ppo_sb3"], "lr", 3e-4)
    assert ppo["sb3"]["learning_rate"] == "lin_0.0003"      # the schedule keeps its shape
    dqn = with_param("dqn_sb3", cfg["algos"]["dqn_sb3"], "gamma", 0.9)
    assert dqn["sb3"]["gamma"] == 0.9
    with pytest.raises(ValueError, match="no entropy"):
        with_param("dqn_sb3", cfg["algos"]["dqn_sb3"], "ent_coef", 0.1)


def test_bad_study_config_names_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: CartPole-v1\nthreshold: 475\nwindow: 100\nalgos:\n  sarsa: {config: {}}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: algos.sarsa: unknown"):
        load_study_config(bad)
    bad.write_text("env: CartPole-v1\nalgos: {}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: missing top-level key 'threshold'"):
        load_study_config(bad)


@pytest.fixture
def small_config(tmp_path):
    cfg = load_study_config()
    cfg["gradient_variance"].update(target_return=0, fit_episodes=4, fit_steps=5, n_batches=4,
                                    batch_episodes=2)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_study_cartpole_end_to_end(tmp_path, small_config, capsys):
    from simreal.cli import main

    out = tmp_path / "study"
    rc = main(["study", "cartpole", "--seeds", "1", "--budget", "600", "--out", str(out),
               "--algos", "reinforce_baseline", "dqn_sb3", "--no-theorem",
               "--config", str(small_config)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["summary"]) == {"reinforce_baseline", "dqn_sb3"}
    for run in res["runs"]:
        assert run["steps"] >= 600 and len(run["episode_returns"]) == len(run["episode_end_steps"])
        assert len(run["eval_returns"]) == 10 and min(run["eval_returns"]) >= 8
    gv = res["gradient_variance"]["estimators"]
    assert set(gv) == {"total_return", "reward_to_go", "baseline", "actor_critic_td", "actor_critic_nstep",
                       "actor_critic_gae"}
    assert all(v["trace_cov"] > 0 and len(v["trace_cov_ci90"]) == 2 for v in gv.values())
    assert (out / "learning_curves.png").stat().st_size > 10_000
    assert (out / "gradient_variance.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "| reinforce_baseline |" in printed and "| dqn_sb3 |" in printed and "tr Cov" in printed


def test_study_sweep_end_to_end(tmp_path, small_config):
    from simreal.cli import main

    out = tmp_path / "sweep"
    rc = main(["study", "sweep", "--algo", "a2c", "--param", "ent_coef", "--values", "0", "0.1",
               "--seeds", "1", "--budget", "400", "--out", str(out), "--config", str(small_config)])
    assert rc == 0
    res = json.loads((out / "sweep_a2c_ent_coef.json").read_text())
    assert [r["value"] for r in res["rows"]] == [0.0, 0.1]
    assert (out / "sweep_a2c_ent_coef.png").stat().st_size > 10_000
