"""Tests for sockworks: one package, so every module has one importable name
(``tests.support``, ``tests.services.test_kv_server``) for pytest and mypy alike."""
