"""ByenatOS: a personal AI runtime for the desktop."""

from __future__ import annotations


def version() -> str:
    """The installed version, read from package metadata (pyproject is the one source)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version("byenatos")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
