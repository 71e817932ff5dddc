"""Keeping a database and its store consistent: verify, remove, orphan collection."""
