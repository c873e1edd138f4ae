"""Benchmarks that print numbers: ``python -m benchmarks.codec_bench`` and
``python -m benchmarks.relay_bench`` (run from the repository root; ``make bench``)."""
