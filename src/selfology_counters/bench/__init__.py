"""Benchmarks: measured in scratch schemas on the same server, never on real data."""
