"""The fault matrix (docs/faults.md) as drills with figures: `simreal faults [--quick] [--json]`.

Each module drills one layer and returns plain records; report.py turns them into the table
BENCHMARKS.md keeps, cli.py is the subcommand. The drills run the same code a deploy runs (the
driver, the runtime, the mock robot); only time is fake where a figure must not depend on load.
"""
