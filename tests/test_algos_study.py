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
    cfg["greedy_eval"] = {"every": 300, "episodes": 3, "seed": 0}
    cfg["report_at"] = 600
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
        assert len(run["eval_returns"]) == 3 and min(run["eval_returns"]) >= 8
        assert [p["steps"] for p in run["greedy_evals"]] == [300, 600]
    gv = res["gradient_variance"]["estimators"]
    assert set(gv) == {"total_return", "reward_to_go", "baseline", "actor_critic_td", "actor_critic_nstep",
                       "actor_critic_gae"}
    assert all(v["trace_cov"] > 0 and len(v["trace_cov_ci90"]) == 2 for v in gv.values())
    assert (out / "learning_curves.png").stat().st_size > 10_000
    assert (out / "gradient_variance.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "| reinforce_baseline |" in printed and "| dqn_sb3 |" in printed and "tr Cov" in printed
    assert "env steps to a greedy 475" in printed and res["summary"]["dqn_sb3"]["greedy"]["report_at"] == 600


def test_study_sweep_end_to_end(tmp_path, small_config):
    from simreal.cli import main

    out = tmp_path / "sweep"
    rc = main(["study", "sweep", "--algo", "a2c", "--param", "ent_coef", "--values", "0", "0.1",
               "--seeds", "1", "--budget", "400", "--out", str(out), "--config", str(small_config)])
    assert rc == 0
    res = json.loads((out / "sweep_a2c_ent_coef.json").read_text())
    assert [r["value"] for r in res["rows"]] == [0.0, 0.1]
    assert (out / "sweep_a2c_ent_coef.png").stat().st_size > 10_000


# ---------------------------------------------------------------------------------------------
# Greedy evaluation while training
# ---------------------------------------------------------------------------------------------
def _lean(obs):          # a fixed CartPole controller: push towards the side the pole leans to
    return (np.asarray(obs)[:, 2] > 0).astype(int)


def test_batched_evaluation_equals_episodes_played_one_by_one():
    import gymnasium as gym

    from simreal.algos.evaluation import evaluate

    envs = [gym.make("CartPole-v1") for _ in range(4)]
    batched = evaluate(_lean, envs, seed=7)
    one_by_one = []
    for i in range(4):
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=7 + i)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(int(_lean(obs[None])[0]))
            total, done = total + r, term or trunc
        one_by_one.append(total)
    assert batched == one_by_one and len(set(batched)) > 1     # different episodes, same results


def test_greedy_curve_metrics_by_hand():
    from simreal.algos.evaluation import first_reaching, held_fraction, mean_at

    pts = [{"steps": s, "returns": [m, m]} for s, m in [(10, 100), (20, 480), (30, 200), (40, 500), (50, 490)]]
    assert first_reaching(pts, 475) == 20 and first_reaching(pts, 501) is None
    assert held_fraction(pts, 475) == pytest.approx(2 / 3)      # 200 forgot it, 500 and 490 held it
    assert held_fraction(pts[:2], 475) is None                  # reached only at the last evaluation
    assert mean_at(pts, 30) == 200 and mean_at(pts, 35) is None


def test_evaluating_while_training_does_not_change_training():
    from simreal.algos.evaluation import GreedyEval
    from simreal.algos.study import load_study_config, run_one

    spec = load_study_config()["algos"]["a2c"]
    often = run_one("a2c", 3, 1_200, spec, greedy=GreedyEval(every=200, episodes=2))
    never = run_one("a2c", 3, 1_200, spec, greedy=GreedyEval(every=10**9, episodes=2))
    assert [p["steps"] for p in often["greedy_evals"]] == [200, 400, 600, 800, 1000, 1200]
    assert never["greedy_evals"] == []
    assert often["episode_returns"] == never["episode_returns"]
    assert often["eval_returns"] == never["eval_returns"]


def test_bad_greedy_eval_block_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: CartPole-v1\nthreshold: 475\nwindow: 100\nalgos: {}\ngreedy_eval: {every: 0}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: greedy_eval: .*positive"):
        load_study_config(bad)
    bad.write_text("env: CartPole-v1\nthreshold: 475\nwindow: 100\nalgos: {}\ngreedy_eval: {often: 5}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: greedy_eval: .*often"):
        load_study_config(bad)


# ---------------------------------------------------------------------------------------------
# DeepSea and the entropy study
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [6, 10])
def test_deep_sea_pays_only_at_the_far_end_and_charges_every_step_towards_it(size):
    from simreal.algos.deep_sea import DeepSea

    env = DeepSea(size)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2 * size,) and obs[0] == 1 and obs[size] == 1 and obs.sum() == 2
    total, steps, term = 0.0, 0, False
    while not term:
        obs, r, term, trunc, _ = env.step(1)
        total, steps = total + r, steps + 1
        assert not trunc
    assert steps == size - 1 and total == pytest.approx(1 - 0.01 * (size - 1) / size)
    env.reset()
    rewards = []
    for t in range(size - 1):
        obs, r, term, trunc, _ = env.step(0)
        rewards.append(r)
        assert not term and trunc == (t == size - 2)
    assert rewards == [0.0] * (size - 1)
    env.reset()                                  # one step left of the goal, then back: no pay
    for a in [1] * (size - 2) + [0]:
        _, r, term, trunc, _ = env.step(a)
    assert not term and trunc and r == 0.0


def test_a_random_policy_finds_deep_sea_at_the_stated_rate():
    import gymnasium as gym

    from simreal.algos.deep_sea import register, uniform_success_probability

    register()
    env = gym.make("simreal/DeepSea6-v0")
    env.action_space.seed(0)
    n, hits = 4_000, 0
    for i in range(n):
        env.reset(seed=i)
        term = trunc = False
        while not (term or trunc):
            _, r, term, trunc, _ = env.step(env.action_space.sample())
        hits += term
    p = uniform_success_probability(6)                 # 1/32
    assert abs(hits / n - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_study_entropy_end_to_end(tmp_path, capsys):
    from simreal.cli import main

    out = tmp_path / "entropy"
    rc = main(["study", "entropy", "--sizes", "6", "8", "--values", "0", "0.1", "--seeds", "2",
               "--budget", "1000", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "entropy_a2c.json").read_text())
    assert [(r["size"], r["ent_coef"], r["n_seeds"]) for r in res["rows"]] == \
        [(6, 0.0, 2), (6, 0.1, 2), (8, 0.0, 2), (8, 0.1, 2)]
    assert all(len(r["greedy_evals"]) == 0 for r in res["runs"])      # every 2000 > budget
    assert (out / "entropy_a2c.png").stat().st_size > 10_000
    assert "| 8 | 1 in 128 | 0.1 |" in capsys.readouterr().out
    assert main(["study", "entropy", "--sizes", "7", "--out", str(out)]) == 2
