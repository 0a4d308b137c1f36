"""The pytest plugin (placeholder, replaced by the real module)."""
