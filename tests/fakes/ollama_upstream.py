"""Filled in by its driver's work."""
