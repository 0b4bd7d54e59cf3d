"""Benchmarks: scripts that print their figures, one `name value unit` line each."""
