"""Benchmarks (`make bench`): ratios against peers measured in the same run; see docs/benchmarks.md."""
