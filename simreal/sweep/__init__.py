"""Sweeps, ablations and many seeds on Ray Tune (`simreal sweep`; the `cluster` extra).

spec.py     SPEC.yaml: robot, algo, seeds, search space, metric; checked before Ray starts
trial.py    one trial = one ordinary `simreal train` run, reporting its evaluations to Ray
run.py      the Tuner: local instance or --address, retries, --resume
results.py  trials.csv, the table, best.yaml, plots
"""
