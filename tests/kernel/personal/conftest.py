"""Fixtures for the personalization tests: a started kernel's personal service, callers, records."""

from __future__ import annotations

import pytest

from app.kernel.personal.embed import model_present
from app.kernel.personal.service import Caller

needs_model = pytest.mark.skipif(
    not model_present(),
    reason="the local embedding model is not installed: run scripts/fetch_embedding_model.py (./test.sh does)",
)

NOTES = Caller("notes-app", frozenset({"hinata:write"}))
CHAT = Caller("chat-app", frozenset({"hinata:read", "hinata:write", "chat"}))
LONER = Caller("loner-app", frozenset({"hinata:write", "chat"}))  # no hinata:read


@pytest.fixture
async def personal(kernel):
    """The kernel's PersonalService, its encrypted store open."""
    await kernel.personal.ready()
    return kernel.personal
