"""Store tests: the backend-agnostic contract and each backend's own behaviour."""
