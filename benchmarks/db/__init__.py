"""The database benchmark (``python -m benchmarks.db``, ``make bench-db``):
what a long history costs the broker's routes, its idle work and its query
plans. `benchmarks.db.__main__` says what it measures and how."""
