"""The store: schema, engine/session factory and Alembic migrations. Imports SQLAlchemy only."""
