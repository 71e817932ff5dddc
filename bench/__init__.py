"""Benchmarks at real scale: ``python -m bench.run`` (see BENCHMARKS.md)."""
