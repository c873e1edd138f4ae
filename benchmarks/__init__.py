"""Benchmarks that print numbers: ``python -m benchmarks.codec_bench`` and
``python -m benchmarks.relay`` (``make bench``), ``python -m benchmarks.db``
(``make bench-db``); run from the repository root."""
