"""The NetBird tunnel provider: Management API client, queries, admin and health checks."""
