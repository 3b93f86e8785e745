"""Training configs: layered loading, clear errors naming the file and key, resolved round trip."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simreal.train.config import (ConfigError, PPOParams, SACParams, config_dirs, dump_yaml,
                                  load_resolved, parse_set, resolve, schedule)
from simreal.yamlfiles import parse_value

SHIPPED = sorted((d.parent.name, d.stem) for root in config_dirs() for d in root.glob("*/*.yaml")
                 if d.stem in ("ppo", "sac"))   # other folders in configs/ belong to other tools


@pytest.mark.parametrize("robot,algo", SHIPPED)
def test_every_shipped_config_validates(robot, algo):
    cfg = resolve(robot, algo)
    assert cfg.robot == robot and cfg.algo == algo
    assert isinstance(cfg.hyperparams, {"ppo": PPOParams, "sac": SACParams}[algo])


def test_shipped_files_exist_for_robots_and_walker():
    assert {("quadruped", "ppo"), ("quadruped", "sac"), ("Walker2d-v5", "ppo"),
            ("Walker2d-v5", "sac")} <= set(SHIPPED)


def test_biped_stage_two_config_layers_on_stage_one():
    """configs/biped/ppo_finetune.yaml (with --config) turns the yaw commands back on."""
    from simreal.train.config import read_yaml

    path = next(root / "biped" / "ppo_finetune.yaml" for root in config_dirs()
                if (root / "biped" / "ppo_finetune.yaml").is_file())
    stage1, stage2 = resolve("biped", "ppo"), resolve("biped", "ppo", [(str(path), read_yaml(path))])
    assert stage1.env.kwargs["command_yaw"] == [0.0, 0.0]
    assert stage2.env.kwargs["command_yaw"] == [-0.3, 0.3]
    assert stage2.hyperparams.learning_rate == "lin_0.0001" != stage1.hyperparams.learning_rate
    assert stage2.policy == stage1.policy          # --init-from needs the same network


def test_layers_apply_in_order(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("hyperparams: {n_steps: 128, gamma: 0.9}\nn_envs: 4\n")
    cfg = resolve("quadruped", "ppo", [(str(f), yaml.safe_load(f.read_text())),
                                       ("--set", parse_set(["hyperparams.gamma=0.95"]))])
    shipped = resolve("quadruped", "ppo")
    assert cfg.hyperparams.n_steps == 128          # from the file
    assert cfg.hyperparams.gamma == 0.95           # --set beats the file
    assert cfg.n_envs == 4
    assert cfg.hyperparams.batch_size == shipped.hyperparams.batch_size   # untouched keys kept


def test_unknown_key_in_file_is_named_with_the_file(tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text("hyperparams:\n  n_step: 128\n")
    with pytest.raises(ConfigError) as e:
        resolve("Pendulum-v1", "ppo", [(str(f), yaml.safe_load(f.read_text()))])
    msg = str(e.value)
    assert str(f) in msg and "hyperparams.n_step" in msg and "unknown key" in msg
    assert "did you mean 'n_steps'" in msg


@pytest.mark.parametrize("item,key", [("polcy.net_arch=[8]", "polcy"),
                                      ("eval.evry=3", "eval.evry"),
                                      ("hyperparams.buffer_size=10", "hyperparams.buffer_size")])
def test_unknown_key_from_set_is_named(item, key):
    with pytest.raises(ConfigError) as e:
        resolve("Pendulum-v1", "ppo", [("--set", parse_set([item]))])   # buffer_size is SAC's
    assert f"--set: {key}: unknown key" in str(e.value)


@pytest.mark.parametrize("item,fragment", [
    ("hyperparams.gamma=1.5", "hyperparams.gamma"),
    ("hyperparams.learning_rate=-1", "hyperparams.learning_rate"),
    ("hyperparams.learning_rate=fast", "hyperparams.learning_rate"),
    ("n_envs=0", "n_envs"),
    ("env.vec_env=threads", "env.vec_env"),
    ("policy.activation=swish", "policy.activation"),
    ("hyperparams.batch_size=100000", "exceeds the rollout size"),
    ("policy.n_critics=3", "n_critics applies to sac and crossq only"),
])
def test_bad_values_are_rejected_with_their_key(item, fragment):
    with pytest.raises(ConfigError) as e:
        resolve("Pendulum-v1", "ppo", [("--set", parse_set([item]))])
    assert fragment in str(e.value) and "--set" in str(e.value)


def test_sac_specific_values():
    cfg = resolve("Pendulum-v1", "sac", [("--set", parse_set(
        ["hyperparams.ent_coef=auto_0.1", "hyperparams.learning_rate=lin_7.3e-4"]))])
    assert cfg.hyperparams.ent_coef == "auto_0.1"
    assert schedule(cfg.hyperparams.learning_rate)(0.5) == pytest.approx(3.65e-4)
    for bad in ("hyperparams.ent_coef=sometimes", "hyperparams.gradient_steps=0",
                "hyperparams.tau=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0].replace(".", r"\.")):
            resolve("Pendulum-v1", "sac", [("--set", parse_set([bad]))])


def test_unknown_algo_and_robot_mismatch(tmp_path):
    with pytest.raises(ConfigError, match="unknown algorithm"):
        resolve("Pendulum-v1", "dqn")
    with pytest.raises(ConfigError, match="robot"):
        resolve("Pendulum-v1", "ppo", [("other.yaml", {"robot": "quadruped"})])


def test_set_parsing_and_coercion():
    assert parse_value("3e-4") == pytest.approx(3e-4)     # YAML 1.1 would keep this a string
    assert parse_value("1_000") == 1000
    assert parse_value("[64, 64]") == [64, 64]
    assert parse_value("true") is True and parse_value("null") is None
    assert parse_value("auto") == "auto"
    assert parse_set(["a.b=1", "a.c=x", "d=2"]) == {"a": {"b": 1, "c": "x"}, "d": 2}
    for bad in ("noequals", "=3", "a..b=1"):
        with pytest.raises(ConfigError, match="dotted.key=value"):
            parse_set([bad])


def test_resolved_config_round_trips_and_hash_ignores_timesteps(tmp_path):
    cfg = resolve("quadruped", "sac", [("--set", parse_set(["seed=7", "env.kwargs.episode_seconds=2"]))])
    p = tmp_path / "config.yaml"
    p.write_text(dump_yaml(cfg))
    again = load_resolved(p)
    assert again == cfg
    assert again.model_copy(update={"timesteps": 5}).sha256() == cfg.sha256()
    assert resolve("quadruped", "sac").sha256() != cfg.sha256()


def test_config_is_frozen():
    cfg = resolve("Pendulum-v1", "ppo")
    with pytest.raises(Exception):
        cfg.seed = 3   # type: ignore[misc]


def test_bad_yaml_file_is_named(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("hyperparams: [unclosed\n")
    from simreal.train.config import read_yaml

    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        read_yaml(f)
    f.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        read_yaml(f)
    with pytest.raises(ConfigError, match="no such file"):
        read_yaml(Path(tmp_path / "missing.yaml"))


def test_evaluation_uses_the_full_randomization_a_curriculum_ends_at():
    from simreal.train.envs import eval_kwargs

    ramp = {"randomization_scale": 0.3, "curriculum_steps": 1000, "episode_seconds": 5.0}
    assert eval_kwargs(ramp) == {"episode_seconds": 5.0}
    assert eval_kwargs({"randomization_scale": 0.5}) == {"randomization_scale": 0.5}  # fixed: kept
