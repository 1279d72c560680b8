"""Business logic called by the routers; each function runs in one database transaction."""
