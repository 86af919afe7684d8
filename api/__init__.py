"""FastAPI app factory and one router per job."""
