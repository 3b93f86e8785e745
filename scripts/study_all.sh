#!/usr/bin/env bash
# The whole policy-gradient study in one command (docs/policy_gradients.md), then BENCHMARKS.md's
# "policy_gradients" section and the doc's figures. ~60 min on 2 idle cores.
#   scripts/study_all.sh [RUNS_DIR]        (default runs/)
set -euo pipefail
cd "$(dirname "$0")/.."
R="${1:-runs}"
PY="${PYTHON:-.venv/bin/python}"
S="$PY -m simreal.cli study"
$S cartpole --workers 2 --out "$R/study_cartpole"
$S entropy --algo a2c --workers 2 --out "$R/study_entropy"
$S entropy --algo ppo_simreal --workers 2 --out "$R/study_entropy"
$S sweep --workers 2 --out "$R/study_sweep" --algo reinforce_baseline --param lr --values 0.0003 0.001 0.003 0.01
$S sweep --workers 2 --out "$R/study_sweep" --algo a2c --param ent_coef --values 0 0.01 0.03 0.1
$S sweep --workers 2 --out "$R/study_sweep" --algo ppo_simreal --param gamma --values 0.9 0.95 0.98 0.99 0.999
$S sweep --workers 2 --out "$R/study_sweep" --algo ppo_simreal --param lr --values 0.0001 0.0003 0.001 0.003
$PY scripts/dqn_zoo_budget.py
$PY scripts/bench_policy_gradients.py "$R/study_cartpole" --sweeps "$R/study_sweep" --entropy "$R/study_entropy" \
    --command "scripts/study_all.sh"
