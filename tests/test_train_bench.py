"""scripts/bench_training.py end to end with a tiny budget (two subprocesses: slow)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_training_writes_its_section(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    import bench_training

    bench = tmp_path / "BENCHMARKS.md"
    argv = ["Walker2d-v5:ppo:256", "--runs-dir", str(tmp_path / "runs"), "--episodes", "1",
            "--bench-file", str(bench), "--set", "hyperparams.n_steps=128", "hyperparams.n_epochs=1",
            "hyperparams.batch_size=64", "eval.every=0", "eval.episodes=1", "checkpoint.every=0"]
    assert bench_training.main(argv) == 0
    text = bench.read_text()
    assert "<!-- BEGIN training -->" in text and "| Walker2d-v5 | PPO | 256 |" in text
    assert "~3,500 (zoo, 1M)" in text and "nproc=" in text
    # a second call reuses the finished run and keeps one row
    assert bench_training.main(argv) == 0
    assert bench.read_text().count("| Walker2d-v5 | PPO |") == 1
