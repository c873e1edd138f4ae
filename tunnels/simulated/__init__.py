"""A simulated NetBird Management API on loopback, for tests and the demo."""
