"""The runtime installs alone: `simreal deploy` needs none of the training or simulation stack.

A meta-path blocker makes torch, mujoco, gymnasium, stable-baselines3, onnx, matplotlib and
friends unimportable in a child interpreter, the way they are on a robot computer that ran only
`pip install simreal`. The mock robot runs in another process with everything installed.
"""
import json
import subprocess
import sys

import pytest

from conftest import ROOT

BUNDLE = ROOT / "assets" / "policies" / "quadruped"
BLOCKED = ("torch", "mujoco", "gymnasium", "stable_baselines3", "sb3_contrib", "onnx", "tensorboard",
           "matplotlib", "imageio", "tqdm")
BLOCKER = f"""
import importlib.abc, sys
class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: runtime-only install)", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
"""


def run_blocked(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_the_blocker_blocks():
    r = run_blocked("import torch")
    assert r.returncode != 0 and "blocked: runtime-only install" in r.stderr


def test_runtime_modules_import_without_the_training_stack():
    r = run_blocked("import simreal, simreal.deploy, simreal.deploy.runtime, simreal.deploy.cli, "
                    "simreal.bundle.policy, simreal.export.cli, simreal.cli\n"
                    "simreal.cli.build_parser()\n"
                    f"print(sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r}))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("argv, extra", [(["rollout", "quadruped", "--steps", "5"], "sim"),
                                         (["train", "quadruped", "--algo", "ppo"], "train")])
def test_a_command_that_needs_an_extra_names_it(argv, extra):
    r = run_blocked(f"from simreal.cli import main; sys.exit(main({argv!r}))")
    assert r.returncode == 3, r.stderr
    assert f"pip install 'simreal[{extra}]'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(not (BUNDLE / "policy.json").is_file(), reason="assets/policies/quadruped is not shipped")
def test_deploy_and_export_check_walk_the_shipped_bundle_with_numpy_only(tmp_path):
    from simreal.mock.process import spawn

    r = run_blocked(f"from simreal.cli import main; sys.exit(main(['export', '--check', {str(BUNDLE)!r}]))")
    assert r.returncode == 0, r.stderr
    log = tmp_path / "run.jsonl"
    with spawn("quadruped", gap="nominal", seed=0, lockstep=True) as mock:
        r = run_blocked("from simreal.cli import main\n"
                        f"sys.exit(main(['deploy', {str(BUNDLE)!r}, '--port', {mock.port!r}, '--duration', '2', "
                        f"'--backend', 'numpy', '--soft-start', '0.3', '--log', {str(log)!r}, '--json']))",
                        timeout=180)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert not summary["safe_stops"], summary
    assert summary["forward_m"] > 0.2, summary          # it walked, numpy backend, no torch/mujoco here
    assert log.is_file()
