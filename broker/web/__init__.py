"""The broker's edge: HTTP and WebSocket handlers, middleware, the relay and the HTML5 proxy."""
