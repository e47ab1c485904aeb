"""Benchmarks of session-py (`python -m benchmarks.core_bench`)."""
