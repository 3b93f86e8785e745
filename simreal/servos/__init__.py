"""Bench tools for bare bus servos: `simreal servos scan|set-id|set-baud` and `simreal calibrate`."""
