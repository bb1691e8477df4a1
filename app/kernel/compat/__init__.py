"""Canonical ⇄ vendor request/response/stream/error translation."""
