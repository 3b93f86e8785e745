"""simreal.algos.api: every algorithm trains, saves, resumes and exports, discrete and continuous."""
from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from simreal.algos import ALGOS, learn, make

SMALL = {  # tiny settings so each algorithm makes several updates in a few hundred steps
    "reinforce": {"hidden": [16]},
    "reinforce_baseline": {"hidden": [16], "value_steps": 2},
    "a2c": {"hidden": [16], "n_steps": 8},
    "ppo_simreal": {"hidden": [16], "n_steps": 32, "minibatch_size": 16, "n_epochs": 2, "norm_reward": True},
}


def _cartpoles(n: int = 2) -> list[gym.Env]:
    return [gym.make("CartPole-v1") for _ in range(n)]


def _pendulums(n: int = 2) -> list[gym.Env]:
    # 30-step episodes so Monte-Carlo methods finish episodes quickly
    return [gym.make("Pendulum-v1", max_episode_steps=30) for _ in range(n)]


def test_registry_names():
    assert set(ALGOS) == {"reinforce", "reinforce_baseline", "a2c", "ppo_simreal"}


@pytest.mark.parametrize("algo", sorted(SMALL))
def test_learn_reports_episodes_and_updates(algo):
    events: list[dict] = []
    agent = learn(algo, _cartpoles(), 400, seed=0, config=SMALL[algo], callback=events.append)
    episodes = [e for e in events if e["event"] == "episode"]
    updates = [e for e in events if e["event"] == "update"]
    assert episodes and updates
    assert agent.counters["timesteps"] >= 400
    assert agent.counters["episodes"] == len(episodes)
    assert agent.counters["updates"] == len(updates)
    # what CartPole gives per step is +1, so a return equals its length
    assert all(e["episode_return"] == e["episode_length"] for e in episodes)
    assert all(e["env"] in (0, 1) for e in episodes)
    steps = [e["timesteps"] for e in events]
    assert steps == sorted(steps)
    assert all(np.isfinite(u["policy_loss"]) for u in updates)


def test_callback_returning_false_stops_training():
    n = []

    def stop_at_first_update(rec: dict) -> bool:
        n.append(rec["event"])
        return rec["event"] != "update"
    agent = learn("a2c", _cartpoles(1), 10_000, seed=0, config=SMALL["a2c"], callback=stop_at_first_update)
    assert agent.counters["updates"] == 1 and agent.counters["timesteps"] == 8


def test_same_seed_same_result_and_vector_env_refused():
    a = learn("ppo_simreal", _cartpoles(), 256, seed=3, config=SMALL["ppo_simreal"])
    b = learn("ppo_simreal", _cartpoles(), 256, seed=3, config=SMALL["ppo_simreal"])
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters()):
        assert torch.equal(pa, pb)
    venv = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    with pytest.raises(TypeError, match="list of them"):
        learn("a2c", venv, 100)
    with pytest.raises(ValueError, match="unknown algo"):
        learn("sac", _cartpoles(), 100)
    with pytest.raises(ValueError, match="unknown key"):
        learn("a2c", _cartpoles(), 100, config={"n_step": 5})


@pytest.mark.parametrize("algo", sorted(SMALL))
def test_state_dict_is_weights_only_and_resumes(algo, tmp_path):
    cfg = SMALL[algo]
    first = learn(algo, _cartpoles(), 300, seed=1, config=cfg)
    torch.save(first.state_dict(), tmp_path / "agent.pt")
    state = torch.load(tmp_path / "agent.pt", weights_only=True)

    # a fresh agent restored from the file acts exactly like the saved one
    env = gym.make("CartPole-v1")
    restored = make(algo, env.observation_space, env.action_space, cfg)
    restored.load_state_dict(state)
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    assert np.array_equal(restored.predict(obs), first.predict(obs))
    assert restored.counters == first.counters
    assert restored.optimizer.state_dict()["state"].keys() == first.optimizer.state_dict()["state"].keys()

    # resuming continues the step counter up to the same total instead of starting over
    seen: list[int] = []
    resumed = learn(algo, _cartpoles(), 600, seed=1, config=cfg, state=state,
                    callback=lambda r: seen.append(r["timesteps"]))
    assert min(seen) > first.counters["timesteps"]
    assert resumed.counters["timesteps"] >= 600
    assert resumed.counters["updates"] > first.counters["updates"]
    with pytest.raises(ValueError, match="is for algo"):
        other = "a2c" if algo != "a2c" else "ppo_simreal"
        make(other, env.observation_space, env.action_space).load_state_dict(state)


@pytest.mark.parametrize("algo, state_dependent_std", [
    ("reinforce", True), ("reinforce_baseline", False), ("a2c", True), ("ppo_simreal", False)])
def test_continuous_actor_module_matches_predict(algo, state_dependent_std):
    cfg = {**SMALL[algo], "state_dependent_std": state_dependent_std, "init_log_std": -0.5}
    agent = learn(algo, _pendulums(), 200, seed=0, config=cfg)
    actor = agent.actor_module().eval()
    raw = torch.tensor(np.random.default_rng(1).normal(scale=5.0, size=(64, 3)), dtype=torch.float32)
    with torch.no_grad():
        a = actor(raw)
    assert a.shape == (64, 1)
    assert float(a.min()) >= -2.0 and float(a.max()) <= 2.0       # Pendulum's torque bounds
    assert np.allclose(a.numpy(), agent.predict(raw.numpy()), atol=1e-6)
    assert np.allclose(a.numpy()[0], agent.predict(raw.numpy()[0]), atol=1e-6)
    # the module is a frozen copy: training the agent further does not change it
    with torch.no_grad():
        for p in agent.policy.parameters():
            p.add_(1.0)
        assert torch.equal(actor(raw), a)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")      # the TorchScript-based exporter
@pytest.mark.parametrize("state_dependent_std", [False, True])
def test_actor_module_exports_to_onnx_with_the_normalizer_inside(state_dependent_std):
    ort = pytest.importorskip("onnxruntime")
    cfg = {**SMALL["ppo_simreal"], "state_dependent_std": state_dependent_std}
    agent = learn("ppo_simreal", _pendulums(), 100, seed=0, config=cfg)
    assert float(agent.obs_norm.var.min()) != 1.0          # statistics were gathered
    actor = agent.actor_module().eval()
    raw = torch.tensor(np.random.default_rng(1).normal(scale=5.0, size=(8, 3)), dtype=torch.float32)
    f = io.BytesIO()
    torch.onnx.export(actor, (raw[:1],), f, input_names=["obs"], output_names=["action"],
                      dynamic_axes={"obs": {0: "batch"}}, dynamo=False)
    out = ort.InferenceSession(f.getvalue()).run(None, {"obs": raw.numpy()})[0]
    with torch.no_grad():
        assert np.allclose(out, actor(raw).numpy(), atol=1e-5)


def test_stochastic_actions_are_clipped_to_the_box():
    agent = learn("ppo_simreal", _pendulums(1), 64, seed=0,
                  config={**SMALL["ppo_simreal"], "init_log_std": 2.0})
    obs = np.zeros((500, 3), np.float32)
    a = agent.predict(obs, deterministic=False)
    assert a.min() >= -2.0 and a.max() <= 2.0 and np.unique(a).size > 10


def test_learning_moves_the_return_up():
    """A quick version of the study: REINFORCE with baseline on CartPole, fixed seed."""
    returns: list[float] = []
    cfg = {"lr": 3e-3, "value_lr": 1e-2, "value_steps": 5}
    learn("reinforce_baseline", gym.make("CartPole-v1"), 3000, seed=0, config=cfg,
          callback=lambda r: returns.append(r["episode_return"]) if r["event"] == "episode" else None)
    first, last = np.mean(returns[:10]), np.mean(returns[-10:])
    assert last > first + 40, (first, last, len(returns))


def test_rollout_stores_the_observation_each_action_was_chosen_from():
    """Regression: without a normalizer the stored observation aliased the envs' reused buffer."""
    from simreal.algos.common import EnvBatch, collect_rollout

    seen: list[np.ndarray] = []

    class Record(gym.Wrapper):
        def reset(self, **kwargs):
            obs, info = self.env.reset(**kwargs)
            seen.append(obs.copy())
            return obs, info

        def step(self, action):
            out = self.env.step(action)
            seen.append(out[0].copy())
            return out

    env = Record(gym.make("CartPole-v1"))
    agent = make("a2c", env.observation_space, env.action_space, {"norm_obs": False})
    envs = EnvBatch([env])
    envs.reset(seed=0)
    ro = collect_rollout(agent, envs, 5)
    assert np.array_equal(ro.obs[:, 0].numpy(), np.array(seen[:5], dtype=np.float32))


@pytest.mark.slow
def test_ppo_learns_a_continuous_task():
    """Pendulum-v1, 100k steps (a few minutes): the Gaussian path learns, not just runs."""
    returns: list[float] = []
    cfg = {"n_steps": 1024, "minibatch_size": 64, "n_epochs": 10, "gamma": 0.9, "gae_lambda": 0.95,
           "lr": 1e-3, "norm_reward": True}
    learn("ppo_simreal", [gym.make("Pendulum-v1") for _ in range(4)], 100_000, seed=0, config=cfg,
          callback=lambda r: returns.append(r["episode_return"]) if r["event"] == "episode" else None)
    first, last = np.mean(returns[:20]), np.mean(returns[-20:])
    assert first < -900 and last > -400, (first, last)
