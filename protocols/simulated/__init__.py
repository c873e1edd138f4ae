"""Simulated guacd, desktop and web app: real servers on loopback for tests and the demo."""
