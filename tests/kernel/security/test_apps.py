"""App registration, tokens (hashed, cached, revocable) and the admin token."""

from __future__ import annotations

import pytest

from app.kernel.errors import BadRequestError, NotFoundError, PermissionDeniedError
from app.kernel.security.apps import TOKEN_PREFIX, AppLimits, ConflictError, app_slug, hash_token
from app.kernel.store.security_tables import AppRow


async def test_register_authenticate_revoke(kernel):
    info, token = kernel.apps.register("My Editor", ["chat", "hinata:write"])
    assert info.id == "my-editor" and token.startswith(TOKEN_PREFIX)
    who = kernel.apps.authenticate(token)
    assert who.id == "my-editor" and who.allows("chat") and not who.allows("hinata:read")
    kernel.apps.revoke("my-editor")
    assert kernel.apps.authenticate(token) is None


async def test_admin_scope_allows_everything(kernel):
    who = kernel.apps.authenticate(kernel.apps.admin_token())
    assert who.is_admin and all(who.allows(s) for s in ("chat", "hinata:read", "psp:read"))


async def test_token_registered_by_another_process_is_found_and_cached(kernel):
    _, token = kernel.apps.register("elsewhere", ["chat"])
    kernel.apps.load()  # as if this process started before that registration
    kernel.apps._by_hash.clear()
    assert kernel.apps.authenticate(token).id == "elsewhere"
    assert hash_token(token) in kernel.apps._by_hash


async def test_garbage_tokens_never_reach_the_database(kernel, monkeypatch):
    def fail(*a, **kw):
        raise AssertionError("queried the store for a token that cannot be ours")

    monkeypatch.setattr(AppRow, "get_or_none", fail)
    assert kernel.apps.authenticate("sk-not-ours") is None
    assert kernel.apps.authenticate("") is None


async def test_replace_reissues_and_keeps_limits(kernel):
    _, old = kernel.apps.register("x", ["chat"], limits=AppLimits(rate_limit_rpm=5))
    with pytest.raises(ConflictError):
        kernel.apps.register("x", ["chat"])
    info, new = kernel.apps.register("x", ["chat"], replace=True)
    assert kernel.apps.authenticate(old) is None and kernel.apps.authenticate(new).id == "x"
    assert info.limits.rate_limit_rpm == 5


async def test_admin_token_is_remade_when_the_keyring_lost_it(kernel):
    first = kernel.apps.admin_token()
    kernel.secrets.delete("gateway:admin-token")
    second = kernel.apps.admin_token()
    assert second != first
    assert kernel.apps.authenticate(first) is None and kernel.apps.authenticate(second).is_admin


@pytest.mark.parametrize(
    "name,scopes,error",
    [
        ("", ["chat"], BadRequestError),
        ("!!!", ["chat"], BadRequestError),
        ("ok", ["root"], BadRequestError),
        ("ok", [], BadRequestError),
        ("byenatos", ["chat"], PermissionDeniedError),
    ],
)
async def test_bad_registrations(kernel, name, scopes, error):
    with pytest.raises(error):
        kernel.apps.register(name, scopes)


async def test_limits_validation_and_unknown_app(kernel):
    kernel.apps.register("x", ["chat"])
    with pytest.raises(BadRequestError):
        kernel.apps.set_limits("x", rate_limit_rpm=-1)
    with pytest.raises(BadRequestError):
        kernel.apps.set_limits("x", daily_token_budget=1.5)
    assert kernel.apps.set_limits("x", daily_cost_budget=2).limits.daily_cost_budget == 2.0
    with pytest.raises(NotFoundError):
        kernel.apps.revoke("ghost")


def test_slugs():
    assert app_slug("  Notes Sync 2 ") == "notes-sync-2"
    assert app_slug("a/b\\c") == "a-b-c"
