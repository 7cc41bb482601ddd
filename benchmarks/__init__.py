"""Benchmarks: each measures against a baseline in the same run and writes JSON to benchmarks/results/."""
