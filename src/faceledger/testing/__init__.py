"""Helpers shared by tests and users: a throw-away PostgreSQL server, ..."""
