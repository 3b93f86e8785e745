"""Export round trips: train briefly, export, load, and compare with the training-time policy."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from simreal.deploy import Policy
from simreal.bundle.contract import is_bundle
from simreal.export.bundle import ExportError, export_bundle, record_observations, training_fields
from simreal.train.layout import policy_source, training_run_of
from simreal.export.extract import UnsupportedPolicy, mlp_from_actor
from simreal.robot.action import action_to_targets
from simreal.robot.observation import layout_for
from simreal.train.normalizer import Normalizer
from simreal.train.policy_module import deterministic_actor

ROBOT = "quadruped"
TOL = 1e-5


def _training(spec, algo="ppo"):
    return training_fields(spec, algo=algo, timesteps=0, seed=0, randomize=True)


def _vec_env(seed=0, episode_seconds=1.0):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from simreal.envs.registration import make_env

    venv = DummyVecEnv([lambda: make_env(ROBOT, randomize=True, seed=seed,
                                         episode_seconds=episode_seconds)])
    return VecNormalize(venv, norm_obs=True, norm_reward=True, clip_obs=10.0)


@pytest.fixture(scope="module")
def trained_ppo():
    """SB3 PPO trained for a few hundred steps with VecNormalize, and observations recorded from
    rollouts of it in the randomized env (as `simreal export` records them)."""
    from stable_baselines3 import PPO

    from simreal.envs.registration import make_env

    venv = _vec_env()
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu",
                policy_kwargs={"net_arch": {"pi": [32, 32], "vf": [32, 32]},
                               "activation_fn": nn.ELU})
    model.learn(256)
    venv.training = False
    env = make_env(ROBOT, randomize=True, seed=1, episode_seconds=1.0)
    obs = record_observations(
        env, lambda o: model.predict(venv.normalize_obs(o), deterministic=True)[0], 600, seed=1)
    return model, venv, obs


@pytest.fixture(scope="module")
def ppo_bundle(trained_ppo, spec, tmp_path_factory):
    model, venv, obs = trained_ppo
    out = tmp_path_factory.mktemp("ppo") / "bundle"
    result = export_bundle(deterministic_actor(model), Normalizer.from_vec_normalize(venv), spec,
                           out, obs, training=_training(spec), latency_calls=100)
    return result


def test_round_trip_ppo_matches_training_policy(trained_ppo, ppo_bundle, spec):
    model, venv, obs = trained_ppo
    # the training-time policy, through SB3's own API: normalize as VecNormalize does, predict
    want, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    want_targets = action_to_targets(want, spec.default_pose, spec.control.action_scale)
    assert np.abs(want).max() > 1e-3                       # not a trivially zero policy
    for backend in ("onnxruntime", "numpy"):
        policy = Policy.load(ppo_bundle.bundle_dir, backend=backend)
        action, targets = policy.infer_batch(obs)
        assert np.max(np.abs(action - want)) < TOL, backend
        assert np.max(np.abs(targets - want_targets)) < TOL, backend
        one_a, one_t = policy.infer(obs[17])
        assert np.max(np.abs(one_a - want[17])) < TOL
        assert np.max(np.abs(one_t - want_targets[17])) < TOL


def test_normalization_is_inside_the_graph(trained_ppo, ppo_bundle):
    """Feeding raw observations must not equal feeding them to the bare network: the normalizer
    (and its float64 arithmetic) is in the graph."""
    model, venv, obs = trained_ppo
    raw_pred, _ = model.predict(obs, deterministic=True)     # skipping normalization
    action, _ = Policy.load(ppo_bundle.bundle_dir).infer_batch(obs)
    assert np.max(np.abs(action - raw_pred)) > 1e-3


def test_bundle_files_and_parity_report(ppo_bundle, spec):
    d = ppo_bundle.bundle_dir
    assert is_bundle(d) and policy_source(d) == ("bundle", d)
    assert {p.name for p in d.iterdir()} == {"policy.onnx", "policy.json", "weights.npz",
                                              "probe.npz", "parity.json"}
    assert not list(d.parent.glob(".*tmp*"))               # staging folder gone
    parity = json.loads((d / "parity.json").read_text())
    assert parity["passed"] and parity["observations"] == 600
    for key, diffs in parity["max_abs_diff"].items():
        assert max(diffs.values()) < TOL, key
    for backend in ("onnxruntime", "numpy"):
        lat = parity["latency_batch1"][backend]
        assert 0 < lat["p50_us"] <= lat["p99_us"]
    c = ppo_bundle.contract
    assert c.joint_names == spec.joint_names and c.control_period == spec.control.period
    assert c.observation.model_dump() == layout_for(spec).to_dict()
    assert c.robot_hash == spec.spec_hash
    assert c.training.action_latency_steps == tuple(spec.randomization.action_latency_steps)
    assert c.training.noise == spec.randomization.noise.model_dump()
    assert c.network.normalization.kind == "standardize"
    assert c.network.normalization.precision == "float64"
    assert [layer.activation for layer in c.network.layers] == ["elu", "elu", "identity"]


def test_onnx_graph_is_documented(ppo_bundle):
    import onnx

    model = onnx.load(str(ppo_bundle.bundle_dir / "policy.onnx"))
    assert model.opset_import[0].version == ppo_bundle.contract.onnx.opset
    assert [i.name for i in model.graph.input] == ["obs"]
    assert [o.name for o in model.graph.output] == ["action", "joint_targets"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["robot"] == ROBOT and meta["robot_hash"] == ppo_bundle.contract.robot_hash
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == ppo_bundle.contract.obs_dim


def test_evaluate_bundle_matches_evaluating_the_run(trained_ppo, ppo_bundle):
    """`eval` on a bundle gives the figures `eval` on the training policy gives (same seeds)."""
    from simreal.train.evaluate import evaluate_bundle
    from simreal.train.envs import make_single
    from simreal.train.evaluate import predictor, run_episodes

    model, venv, _ = trained_ppo
    kw = {"episode_seconds": 0.4}
    got, source = evaluate_bundle(ppo_bundle.bundle_dir, episodes=2, seed=5, env_kwargs=kw)
    env = make_single(ROBOT, True, kw)
    want = run_episodes(predictor(model), env, Normalizer.from_vec_normalize(venv), 2, 5)
    env.close()
    assert got.episodes == 2 and got.mean_length == want.mean_length == 20
    assert got.mean_return == pytest.approx(want.mean_return, rel=1e-3)
    assert source["robot"] == ROBOT and source["backend"] == "onnxruntime"


# ---- other policy kinds: parity against the torch module on random observations -------------------
def _export_and_compare(actor, normalizer, spec, out, predict):
    rng = np.random.default_rng(3)
    obs = (rng.normal(size=(500, layout_for(spec).size)) * 3).astype(np.float32)
    export_bundle(actor, normalizer, spec, out, obs, training=_training(spec), latency_calls=20)
    want = np.clip(predict(obs), -1, 1)
    for backend in ("onnxruntime", "numpy"):
        action, _ = Policy.load(out, backend=backend).infer_batch(obs)
        assert np.max(np.abs(action - want)) < TOL, backend
    return want


def test_sac(spec, tmp_path):
    from stable_baselines3 import SAC

    venv = _vec_env()
    venv.obs_rms.update(np.random.default_rng(0).normal(1.0, 2.0, (64, venv.observation_space.shape[0])))
    model = SAC("MlpPolicy", venv, buffer_size=100, learning_starts=0, seed=0, device="cpu",
                policy_kwargs={"net_arch": [32, 32]})
    want = _export_and_compare(deterministic_actor(model), Normalizer.from_vec_normalize(venv), spec,
                               tmp_path / "b", lambda o: model.predict(venv.normalize_obs(o),
                                                                       deterministic=True)[0])
    assert np.abs(want).max() > 1e-3
    assert Policy.load(tmp_path / "b").contract.network.head.squash == "tanh"


def test_ppo_gsde_squashed(spec, tmp_path):
    from stable_baselines3 import PPO

    venv = _vec_env()
    model = PPO("MlpPolicy", venv, use_sde=True, n_steps=64, seed=0, device="cpu",
                policy_kwargs={"net_arch": [16], "squash_output": True, "activation_fn": nn.LeakyReLU})
    _export_and_compare(deterministic_actor(model), Normalizer.from_vec_normalize(venv), spec,
                        tmp_path / "b", lambda o: model.predict(venv.normalize_obs(o),
                                                                deterministic=True)[0])


@pytest.mark.parametrize("state_dependent_std", [False, True])
def test_own_algorithm(spec, tmp_path, state_dependent_std):
    """simreal.algos agents carry their normalizer inside actor_module() (float32 arithmetic)."""
    import gymnasium as gym

    from simreal.algos import make

    d, n = layout_for(spec).size, spec.n_joints
    obs_space = gym.spaces.Box(-100, 100, (d,), np.float32)
    act_space = gym.spaces.Box(-1, 1, (n,), np.float32)
    torch.manual_seed(0)
    agent = make("ppo_simreal", obs_space, act_space,
                 {"hidden": [32, 32], "activation": "relu", "state_dependent_std": state_dependent_std})
    agent.obs_norm.update(np.random.default_rng(0).normal(0.5, 3.0, (256, d)))
    with torch.no_grad():
        agent.policy.net[-1].weight.mul_(100.0)      # make the (tiny-init) output layer matter
    _export_and_compare(agent.actor_module(), Normalizer(), spec, tmp_path / "b",
                        lambda o: agent.predict(o, deterministic=True))
    c = Policy.load(tmp_path / "b").contract
    assert c.network.normalization.precision == "float32"


# ---- export refusals ----------------------------------------------------------------------------
def _mlp(spec, hidden=16):
    d, n = layout_for(spec).size, spec.n_joints
    return nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, n))


def test_non_finite_weights_not_exported(spec, tmp_path):
    actor = _mlp(spec)
    with torch.no_grad():
        actor[0].weight[0, 0] = float("nan")
    obs = np.zeros((10, layout_for(spec).size), np.float32)
    with pytest.raises(ExportError, match="layers.0.weight has 1 non-finite"):
        export_bundle(actor, None, spec, tmp_path / "b", obs, training=_training(spec))
    assert not (tmp_path / "b").exists()
    assert not list(tmp_path.iterdir())                     # no staging folder left behind


def test_wrong_sizes_not_exported(spec, tmp_path):
    obs = np.zeros((10, layout_for(spec).size), np.float32)
    wrong = nn.Sequential(nn.Linear(layout_for(spec).size, 8), nn.Tanh(), nn.Linear(8, 3))
    with pytest.raises(ExportError, match="needs 32 -> 8"):
        export_bundle(wrong, None, spec, tmp_path / "b", obs, training=_training(spec))
    with pytest.raises(ExportError, match=r"expected \[N, 32\]"):
        export_bundle(_mlp(spec), None, spec, tmp_path / "b", obs[:, :5], training=_training(spec))


def test_unsupported_layers_refused(spec):
    d = layout_for(spec).size
    with pytest.raises(UnsupportedPolicy, match="Dropout"):
        mlp_from_actor(nn.Sequential(nn.Linear(d, 8), nn.Dropout(), nn.Linear(8, 8)))
    with pytest.raises(UnsupportedPolicy, match="cannot export a Conv1d"):
        mlp_from_actor(nn.Conv1d(1, 1, 3))


def test_existing_destination_kept_without_force(spec, tmp_path):
    obs = np.zeros((10, layout_for(spec).size), np.float32)
    out = tmp_path / "b"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="exists"):
        export_bundle(_mlp(spec), None, spec, out, obs, training=_training(spec))
    with pytest.raises(ExportError, match="not a bundle"):
        export_bundle(_mlp(spec), None, spec, out, obs, training=_training(spec), overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


# ---- from a run directory, through the CLI ---------------------------------------------------------
def _write_run_dir(run_dir: Path, model, venv) -> None:
    """A run directory as simreal.train writes it (config + one verified checkpoint)."""
    from simreal.train.checkpoint import CheckpointStore
    from simreal.train.config import dump_yaml, resolve
    from simreal.train.layout import RunPaths
    from simreal.train.snapshot import write_snapshot

    cfg = resolve(ROBOT, "ppo", [("test", {
        "n_envs": 1, "timesteps": 256, "env": {"kwargs": {"episode_seconds": 1.0}},
        "policy": {"net_arch": {"pi": [32, 32], "vf": [32, 32]}, "activation": "elu"},
        "hyperparams": {"n_steps": 128, "batch_size": 64, "n_epochs": 2},
        "eval": {"episodes": 1}})])
    paths = RunPaths(run_dir)
    run_dir.mkdir()
    paths.config.write_text(dump_yaml(cfg))
    CheckpointStore(paths.checkpoints).save(
        int(model.num_timesteps), lambda d: write_snapshot(d, model, venv, cfg, wall_time_s=1.0))


def test_export_run_dir_with_cli(trained_ppo, tmp_path, spec, capsys):
    from simreal.cli import main
    from simreal.train.snapshot import load_run

    model, venv, obs = trained_ppo
    run_dir, out = tmp_path / "run", tmp_path / "bundle"
    _write_run_dir(run_dir, model, venv)
    assert main(["export", str(run_dir), "--out", str(out), "--observations", "200",
                 "--eval-episodes", "1", "--with-checkpoint"]) == 0
    printed = capsys.readouterr().out
    assert "exported ppo policy for quadruped" in printed and "parity on 200" in printed

    policy = Policy.load(out)
    c = policy.contract
    assert c.training.algo == "ppo" and c.training.timesteps == model.num_timesteps
    assert c.training.config_sha256 and c.provenance.git["export"]["commit"]
    assert c.evaluation["episodes"] == 1 and c.evaluation["mean_length"] == 50
    want, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    assert np.max(np.abs(policy.infer_batch(obs)[0] - want)) < TOL

    # the training checkpoint travels with the bundle, and loads as a run (for fine-tuning)
    assert training_run_of(out) == out / "run" and training_run_of(run_dir) == run_dir
    again = load_run(training_run_of(out))
    np.testing.assert_allclose(again.model.predict(venv.normalize_obs(obs[:20]), deterministic=True)[0],
                               want[:20], atol=1e-6)

    assert main(["export", "--check", str(out)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["export", str(run_dir), "--out", str(out)]) == 1    # exists, no --force
    assert "--force" in capsys.readouterr().err


def test_check_refuses_a_damaged_bundle(ppo_bundle, tmp_path, capsys):
    import shutil

    from simreal.cli import main

    b = Path(shutil.copytree(ppo_bundle.bundle_dir, tmp_path / "b"))
    data = json.loads((b / "policy.json").read_text())
    data["joint_names"][0], data["joint_names"][1] = data["joint_names"][1], data["joint_names"][0]
    (b / "policy.json").write_text(json.dumps(data))
    assert main(["export", "--check", str(b)]) == 1
    assert "field joint_names" in capsys.readouterr().err


def test_schema_command(capsys):
    from simreal.cli import main

    assert main(["export", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Contract" and "joint_names" in schema["properties"]


@pytest.mark.slow
def test_train_then_export_end_to_end(tmp_path):
    """The whole path a user takes: simreal train, simreal export, load."""
    from simreal.cli import main

    run_dir, out = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", ROBOT, "--algo", "ppo", "--timesteps", "512", "--envs", "1",
                 "--out", str(run_dir), "--no-progress", "--set", "hyperparams.n_steps=256",
                 "hyperparams.batch_size=64", "eval.episodes=1", "env.kwargs.episode_seconds=2.0"]) == 0
    assert main(["export", str(run_dir), "--out", str(out), "--with-checkpoint"]) == 0
    policy = Policy.load(out)
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["observations"] == 3000
    assert policy.contract.evaluation["episodes"] == 1


def test_crossq_batch_renorm_is_folded_into_the_exported_layers(spec, tmp_path):
    import torch
    from sb3_contrib import CrossQ

    venv = _vec_env()
    model = CrossQ("MlpPolicy", venv, buffer_size=100, learning_starts=0, seed=0, device="cpu",
                   policy_kwargs={"net_arch": [32, 32]})
    rng = torch.Generator().manual_seed(0)
    for m in model.actor.latent_pi:                      # running statistics far from the defaults
        if type(m).__name__ == "BatchRenorm1d":
            m.ra_mean.copy_(torch.randn(m.ra_mean.shape, generator=rng))
            m.ra_var.copy_(torch.rand(m.ra_var.shape, generator=rng) * 3 + 0.2)
            m.scale.data.copy_(torch.rand(m.scale.shape, generator=rng) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=rng) * 0.3)
    want = _export_and_compare(deterministic_actor(model), Normalizer.from_vec_normalize(venv), spec,
                               tmp_path / "b", lambda o: model.predict(venv.normalize_obs(o),
                                                                       deterministic=True)[0])
    assert np.abs(want).max() > 1e-3
