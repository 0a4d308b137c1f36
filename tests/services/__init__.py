"""Service tests: sessions driven directly, and real servers on port 0."""
