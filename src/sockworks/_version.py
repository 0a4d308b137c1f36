"""The package version, in a module of its own so that nothing inside the
package needs to import the package root (which re-exports the public API)."""

__version__ = "0.1.0"
