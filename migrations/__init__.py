"""Alembic migrations of the gallery database, shipped inside the package as ``gallery.migrations``."""
