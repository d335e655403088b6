"""Benchmarks: `python -m bench` runs each module's main() and prints JSON lines."""
