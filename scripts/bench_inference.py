"""Batch-1 inference latency of a policy bundle: onnxruntime (1 thread) vs the numpy evaluator.

    python scripts/bench_inference.py [BUNDLE_DIR] [--calls N] [--rounds R] [--no-write]

Times `Policy.infer(obs)`, the call the runtime makes every control period (input checks
included), on the bundle's recorded probe observations. The two backends are measured in
alternating rounds in one process, so a change in machine load hits both alike. Writes the
"inference" section of BENCHMARKS.md. Without BUNDLE_DIR it uses assets/policies/quadruped, or,
if that is not there yet, exports a freshly initialised policy with the shipped quadruped PPO
network shape (and says so).
Targets (quadruped, batch 1): p99 < 50 us with onnxruntime, < 100 us with numpy.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

TARGET_P99_US = {"onnxruntime": 50.0, "numpy": 100.0}
SHIPPED = ROOT / "assets" / "policies" / "quadruped"


def fresh_bundle(out: Path) -> Path:
    """An untrained quadruped PPO policy (shipped config's network), exported like a real one."""
    import torch

    from simreal.export.bundle import export_bundle, record_observations, training_fields
    from simreal.robot.spec import load_robot
    from simreal.train import sb3
    from simreal.train.config import resolve
    from simreal.train.envs import make_single, make_vec
    from simreal.train.normalizer import Normalizer
    from simreal.train.policy_module import deterministic_actor

    torch.set_num_threads(1)
    cfg = resolve("quadruped", "ppo")
    venv, vecnorm = make_vec(cfg, seed=0, n_envs=1)
    with warnings.catch_warnings():   # SB3: batch_size vs a 1-env rollout; irrelevant here
        warnings.simplefilter("ignore", UserWarning)
        model = sb3.build_model(cfg, venv, for_inference=True)
    env = make_single("quadruped", True, dict(cfg.env.kwargs))
    rng = np.random.default_rng(0)
    obs = record_observations(env, lambda o: rng.uniform(-1, 1, env.action_space.shape), 500, seed=0)
    env.close()
    if vecnorm is not None:     # realistic normalization statistics from the random rollout
        vecnorm.obs_rms.update(obs.astype(np.float64))
    spec = load_robot("quadruped")
    export_bundle(deterministic_actor(model), Normalizer.from_vec_normalize(vecnorm), spec, out, obs,
                  training=training_fields(spec, algo="ppo", timesteps=0, seed=0, randomize=True),
                  latency_calls=100)
    venv.close()
    return out


def measure(bundle: Path, calls: int, rounds: int) -> dict[str, dict]:
    from simreal.bundle.policy import Policy
    from simreal.bundle.contract import load_arrays
    from simreal.export.parity import latency_us

    policies = {b: Policy.load(bundle, backend=b) for b in ("onnxruntime", "numpy")}
    obs = load_arrays(bundle / "probe.npz")["obs"]
    samples: dict[str, list[float]] = {b: [] for b in policies}
    for _ in range(rounds):
        for b, p in policies.items():
            r = latency_us(p.infer, obs, n=calls, warmup=200)
            samples[b].append(r)
    out = {}
    for b, rs in samples.items():
        # pool the rounds: percentiles of all calls, approximated by the per-round figures' median
        out[b] = {"p50_us": float(np.median([r["p50_us"] for r in rs])),
                  "p99_us": float(np.median([r["p99_us"] for r in rs])),
                  "p99_worst_round_us": float(max(r["p99_us"] for r in rs)),
                  "calls": calls * rounds}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", help="bundle directory (default: the shipped quadruped)")
    ap.add_argument("--calls", type=int, default=5000, help="timed calls per round and backend")
    ap.add_argument("--rounds", type=int, default=8, help="alternating rounds per backend")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args(argv)

    from _bench_md import machine_line, publish

    from simreal.bundle.contract import is_bundle

    note = ""
    tmp = None
    if args.bundle:
        bundle = Path(args.bundle)
    elif is_bundle(SHIPPED):
        bundle = SHIPPED
    else:
        tmp = tempfile.TemporaryDirectory()
        print(f"{SHIPPED} not found: exporting a freshly initialised quadruped PPO policy "
              f"(shipped config's network) to measure instead", file=sys.stderr)
        bundle = fresh_bundle(Path(tmp.name) / "quadruped")
        note = ("Measured on a freshly initialised policy with the shipped quadruped PPO network "
                "shape (assets/policies/quadruped did not exist yet); latency depends on the "
                "shape, not on the weights.")
    from simreal.bundle.contract import read_contract

    c = read_contract(bundle)
    sizes = [c.obs_dim] + [layer.out_features for layer in c.network.layers]
    acts = ",".join(sorted({layer.activation for layer in c.network.layers} - {"identity"}))
    load_before = os.getloadavg()[0]
    res = measure(bundle, args.calls, args.rounds)
    load_after = os.getloadavg()[0]

    rows = ["| backend | p50 (µs) | p99 (µs) | worst round p99 (µs) | target p99 (µs) | p99 / target |",
            "|---|---:|---:|---:|---:|---:|"]
    for b, r in res.items():
        t = TARGET_P99_US[b]
        rows.append(f"| {b} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | {r['p99_worst_round_us']:.1f} "
                    f"| {t:.0f} | {r['p99_us'] / t:.2f} |")
    ratio = res["numpy"]["p50_us"] / res["onnxruntime"]["p50_us"]
    shown = bundle.relative_to(ROOT) if bundle.is_relative_to(ROOT) else "fresh export"
    cmd = "python scripts/bench_inference.py" + (f" {args.bundle}" if args.bundle else "")
    md = "\n".join([
        "## Policy inference (batch 1)", "",
        machine_line(cmd), "",
        f"Bundle: `{shown}` · robot {c.robot} · MLP {' → '.join(map(str, sizes))} ({acts}) · "
        f"`Policy.infer` (input checks included) · onnxruntime 1 thread with I/O binding · "
        f"{args.rounds} alternating rounds × {args.calls} calls per backend; p50/p99 are the "
        f"median over rounds. Load average {load_before:.1f} → {load_after:.1f} during the run.", "",
        *rows, "",
        f"numpy / onnxruntime p50 ratio: {ratio:.2f}." + (f" {note}" if note else ""),
    ])
    publish("inference", md, write=not args.no_write)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
