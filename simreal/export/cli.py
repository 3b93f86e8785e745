"""`simreal export RUN_DIR --out BUNDLE_DIR` and `simreal export --check BUNDLE_DIR`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a policy bundle (ONNX + contract) from a run, or check a bundle",
        description="Export a trained policy as a bundle: policy.onnx (normalization and action "
                    "scaling inside), policy.json (the contract), weights.npz, probe.npz and "
                    "parity.json. With --check, verify an existing bundle against its robot.")
    p.add_argument("source", nargs="?", help="run directory to export (or the bundle, with --check)")
    p.add_argument("--out", help="bundle directory to write")
    p.add_argument("--check", metavar="BUNDLE_DIR", help="validate a bundle against its robot and exit")
    p.add_argument("--checkpoint", default="auto",
                   help="best | latest | auto (best if valid, else latest) | a checkpoint folder")
    p.add_argument("--observations", type=int, default=3000,
                   help="observations recorded for the parity check (default 3000)")
    p.add_argument("--eval-episodes", type=int, default=None,
                   help="episodes to evaluate the exported graph in simulation (default: the "
                        "run's eval.episodes; 0: reuse the run's own evaluation of that step)")
    p.add_argument("--with-checkpoint", action="store_true",
                   help="also copy the training checkpoint into BUNDLE/run/ (for fine-tuning)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow a pickle-based SB3 .zip as the source (only files you trust)")
    p.add_argument("--allow-hash-mismatch", action="store_true",
                   help="--check: accept a bundle whose robot files changed since training")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "numpy"], default="auto",
                   help="--check: backend to load the bundle with")
    p.add_argument("--expect-sha256", metavar="HEX",
                   help="--check: refuse unless policy.json has this sha256 (printed by --check)")
    p.add_argument("--schema", action="store_true", help="print the JSON schema of policy.json and exit")
    p.set_defaults(func=run)


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    if args.schema:
        import json

        from simreal.bundle.contract import Contract

        print(json.dumps(Contract.model_json_schema(), indent=1))
        return 0
    if args.check:
        return run_check(args.check, args.allow_hash_mismatch, args.backend, args.expect_sha256)
    if not args.source or not args.out:
        return _error("usage: simreal export RUN_DIR --out BUNDLE_DIR  (or --check BUNDLE_DIR)")
    if args.observations < 1:
        return _error("--observations must be at least 1")

    src = Path(args.source)
    if (src / "episodes").is_dir() and not (src / "config.yaml").is_file():   # simreal finetune's layout
        return _error(f"{src}: a fine-tuning run, which exports itself to {src / 'bundle'} when it ends; "
                      f"`simreal finetune BUNDLE --port PORT --resume {src}` exports it again (the robot untouched "
                      f"once its budget is met)")
    from simreal.export.bundle import ExportError, export_run
    from simreal.bundle.contract import BundleError
    from simreal.train.checkpoint import CheckpointError
    from simreal.train.sb3 import UntrustedContentError

    try:
        result = export_run(Path(args.source), Path(args.out), checkpoint=args.checkpoint,
                            trust=args.trust_checkpoint, n_obs=args.observations,
                            eval_episodes=args.eval_episodes, with_checkpoint=args.with_checkpoint,
                            overwrite=args.force, log=lambda s: print(s, file=sys.stderr))
    except (ExportError, BundleError, CheckpointError, UntrustedContentError, FileNotFoundError) as e:
        return _error(str(e))
    c, par = result.contract, result.parity
    worst = max(max(v.values()) for k, v in par["max_abs_diff"].items() if k.startswith("training_vs"))
    lat = par["latency_batch1"]
    print(f"exported {c.training.algo} policy for {c.robot} (step {c.training.timesteps:,}) -> "
          f"{result.bundle_dir}")
    print(f"  parity on {par['observations']} observations: max |training - bundle| = {worst:.2g} "
          f"(< {par['tolerance']:g})")
    print("  batch-1 latency: " + ", ".join(f"{b} p50 {v['p50_us']:.0f} us / p99 {v['p99_us']:.0f} us"
                                           for b, v in lat.items()))
    if c.evaluation:
        ev = c.evaluation
        print(f"  evaluation: return {ev.get('mean_return')}, falls {ev.get('fall_rate')}, "
              f"v {ev.get('mean_forward_velocity')} m/s ({ev.get('source')})")
    return 0


def run_check(bundle: str, allow_hash_mismatch: bool, backend: str, expect_sha256: str | None = None) -> int:
    import warnings

    from simreal.bundle.policy import Policy
    from simreal.bundle.contract import BundleError, ContractWarning, contract_sha256
    from simreal.robot.spec import RobotSpecError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ContractWarning)   # printed below instead
        try:
            policy = Policy.load(bundle, allow_hash_mismatch=allow_hash_mismatch, backend=backend,
                                 expect_sha256=expect_sha256)
        except (BundleError, RobotSpecError, KeyError) as e:
            return _error(f"{bundle}: refused\n{e}")
    c = policy.contract
    for w in policy.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{bundle}: OK · robot {c.robot} · {c.training.algo}, {c.training.timesteps:,} steps · "
          f"{len(c.joint_names)} joints · obs {c.obs_dim} · {1 / c.control_period:.0f} Hz · "
          f"backend {policy.backend_name}")
    print(f"sha256 {contract_sha256(Path(bundle))}  (pin it: simreal deploy ... --expect-sha256 <this>)")
    return 0
