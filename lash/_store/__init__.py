"""The store contract, lease rules and the in-memory backend."""
