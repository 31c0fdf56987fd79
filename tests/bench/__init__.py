"""Benchmarks (`make bench`): ratios against peers measured in the same run; see /work/shared/BENCHMARKS.md."""
