"""The relay benchmark: the broker, guacamole-lite and raw TCP side by side
(``python -m benchmarks.relay``; see its ``__main__`` for what it measures)."""
