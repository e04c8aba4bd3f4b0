"""Benchmarks: b24app against the platform floor and against its peers."""
