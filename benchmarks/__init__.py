"""Speed benchmarks: `python -m benchmarks.NAME`; each prints one JSON line last."""
