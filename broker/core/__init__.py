"""The broker's core: session state, database, auth, audit, events.

Nothing here imports aiohttp.web or broker.web (checked by import-linter).
"""
