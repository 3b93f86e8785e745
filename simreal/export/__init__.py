"""Policy export: a trained policy -> a bundle (policy.onnx + policy.json contract + parity.json).

onnx_graph.py (the ONNX graph) · extract.py (torch actor -> arrays) · parity.py (agreement,
latency) · bundle.py (export_bundle, export_run) · cli.py (`simreal export`). The format itself
(contract schema, numpy network, the loader `Policy`) is simreal.bundle.
"""
