"""Secrets, app tokens and scopes, audit."""
