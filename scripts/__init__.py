"""Long-running checks of the broker as real processes: ``python -m scripts.chaos``,
``python -m scripts.fuzz_api``, ``python -m scripts.soak`` (run from the
repository root; ``make chaos``, ``make fuzz``, ``make soak``)."""
