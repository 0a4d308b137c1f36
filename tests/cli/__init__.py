"""Tests of the ``sockworks`` command line."""
