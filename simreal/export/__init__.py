"""Policy export: a trained policy -> a bundle (policy.onnx + policy.json contract + parity.json).

contract.py (the schema, robot checks; numpy/pydantic only) · numpy_mlp.py (the network as arrays
and its numpy evaluator) · onnx_graph.py (the ONNX graph) · extract.py (torch actor -> arrays) ·
parity.py (agreement, latency) · bundle.py (export_bundle, export_run) · cli.py (`simreal export`).
The loader the runtime uses is simreal.deploy.policy.Policy.
"""
