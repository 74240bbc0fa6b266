"""Job and service registry (SQLAlchemy) and the batch runner."""
