"""Benchmarks that print numbers and ratios against a reference measured in the same run."""
