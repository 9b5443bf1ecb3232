"""All SQL of allegro-ops lives in this package."""
from .db import DB_FILENAME, Store

__all__ = ["Store", "DB_FILENAME"]
