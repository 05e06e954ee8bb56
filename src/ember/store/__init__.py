"""Persistent state: the Store interface and its implementations (SQLite now, PostgreSQL later)."""

from ember.store.base import Store
from ember.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store"]
