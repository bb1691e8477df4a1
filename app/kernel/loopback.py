"""Which host names mean this machine: the gateway's Host check and the drivers' proxy choice share them."""

from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def is_loopback(url: str | None) -> bool:
    """Does `url` point at this machine (a local model server, whose requests skip any proxy)?"""
    return bool(url) and (urlsplit(url).hostname or "") in LOOPBACK_HOSTS
