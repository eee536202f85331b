"""Benchmarks and reports over runners: comparison of models, latency and accuracy."""
