"""Shipyard's benchmark suite (``make bench`` → ``python -m bench``).

Every figure that matters is a *ratio of two things measured in the same run* on the same
machine, so the shared, noisy machines these run on cancel out; raw timings are kept beside the
ratios in ``bench/results.json``. Not part of the test run. See docs/benchmarks.md.
"""
