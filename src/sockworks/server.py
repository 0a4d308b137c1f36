"""The embeddable Server (placeholder, replaced by the real module)."""
