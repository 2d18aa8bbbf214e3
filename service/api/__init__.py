"""The HTTP API: the FastAPI app, its routers, middleware (auth, limits, logs) and the MCP server."""
