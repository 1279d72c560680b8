"""The PAL server: FastAPI app, database access, auth, oracle, budget."""
