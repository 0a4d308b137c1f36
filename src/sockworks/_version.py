"""The package version, in a module of its own.

Modules inside the package import ``__version__`` from here, never from the
package root ``sockworks`` (an import-linter contract forbids that: the root
re-exports the public API and importing it from inside invites cycles).
"""

__version__ = "0.1.0"
