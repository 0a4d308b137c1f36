"""The key-value store layer: one interface, an embedded and a Redis backend."""
