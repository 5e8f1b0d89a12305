"""The HTTP transport: the app factory, routes, the error table, middleware and the fast lane."""
