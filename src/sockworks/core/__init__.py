"""The server core shared by every concurrency model."""
