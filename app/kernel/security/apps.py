"""Apps that may use the gateway: registration, bearer tokens, scopes and per-app limits.

A token is shown once, when it is made; the store keeps only its SHA-256. Every request is
authenticated against an in-memory map of those hashes (O(1), no query); a token this process
has not seen yet (registered by another ByenatOS process on the same store) is looked up once
and then cached.

The user's own admin token (held by the CLI and the UI) lives in the secret store (OS keyring),
is created on first use, and is re-made if the keyring lost it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets as _random
import time
from dataclasses import dataclass, field
from typing import Any

from app.kernel.errors import BadRequestError, NotFoundError, PermissionDeniedError
from app.kernel.security.secrets import SecretStore
from app.kernel.store.security_tables import AppRow, app_version

SCOPES = ("chat", "hinata:write", "hinata:read", "psp:read", "admin")
# What an app may grant itself without the user's admin token (open registration): using
# models and submitting records. Reading personal data or administering needs the user.
SELF_SERVICE_SCOPES = frozenset({"chat", "hinata:write"})
ADMIN_APP_ID = "byenatos"
ADMIN_SECRET = "gateway:admin-token"
TOKEN_PREFIX = "byn-"
_TOKEN_LEN = len(TOKEN_PREFIX) + 43  # token_urlsafe(32) is 43 characters
log = logging.getLogger(__name__)
_SLUG_DROP = re.compile(r"[^a-z0-9._-]+")

UNCHANGED: Any = object()  # set_limits: leave this limit as it is


@dataclass(frozen=True, slots=True)
class AppLimits:
    rate_limit_rpm: int | None = None
    daily_token_budget: int | None = None
    daily_cost_budget: float | None = None


@dataclass(frozen=True, slots=True)
class AppIdentity:
    """Who is calling: what the gateway needs per request, nothing more."""

    id: str
    scopes: frozenset[str]
    limits: AppLimits = field(default_factory=AppLimits)

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes


@dataclass(frozen=True, slots=True)
class AppInfo:
    """An app as `byenatos apps list` and /api/apps show it (no token, no hash)."""

    id: str
    name: str
    scopes: list[str]
    builtin: bool
    created_at: float
    revoked: bool
    token_hint: str
    limits: AppLimits

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": self.scopes,
            "builtin": self.builtin,
            "created_at": self.created_at,
            "revoked": self.revoked,
            "token_hint": self.token_hint,
            "rate_limit_rpm": self.limits.rate_limit_rpm,
            "daily_token_budget": self.limits.daily_token_budget,
            "daily_cost_budget": self.limits.daily_cost_budget,
        }


_MAX_REMEMBERED = 1024  # valid tokens kept for the fast lookup (one per app in practice)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + _random.token_urlsafe(32)


def app_slug(name: str) -> str:
    slug = _SLUG_DROP.sub("-", name.strip().lower()).strip("-._")[:64]
    if not slug:
        raise BadRequestError("name: give the app a name made of letters or digits (e.g. 'my-editor')")
    return slug


def check_scopes(scopes: Any) -> list[str]:
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise BadRequestError(f"scopes: a list of scope names ({', '.join(SCOPES)})")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise BadRequestError(f"scopes: unknown {', '.join(unknown)}; known scopes: {', '.join(SCOPES)}")
    return [s for s in SCOPES if s in scopes]  # canonical order, no duplicates


class AppRegistry:
    def __init__(self, secrets: SecretStore) -> None:
        self.secrets = secrets
        self._by_hash: dict[str, AppIdentity] = {}
        self._hash_of: dict[str, str] = {}  # app id → its token hash, to drop it on revoke
        # Tokens seen valid since the last change to the apps, so a request skips the hash.
        # Memory only (never written anywhere), and emptied on every change to `_by_hash`.
        self._by_token: dict[str, AppIdentity] = {}
        self._watch: asyncio.Task[None] | None = None
        self.reloaded = asyncio.Event()  # set when another process's change was picked up
        self._seen = (0, 0)  # (PRAGMA data_version, app_version) at the last look

    # -- start-up ------------------------------------------------------------------------------
    def load(self) -> None:
        """Cache every live token's hash. No keyring access: start-up stays fast."""
        by_hash: dict[str, AppIdentity] = {}
        hash_of: dict[str, str] = {}
        for row in AppRow.select().where(AppRow.revoked_at.is_null()):
            by_hash[row.token_hash] = AppIdentity(row.id, frozenset(row.scopes or ()), _limits_of(row))
            hash_of[row.id] = row.token_hash
        self._by_hash, self._hash_of = by_hash, hash_of  # swapped whole: requests never see half a reload
        self._by_token = {}

    async def start(self, *, watch_interval: float = 2.0) -> None:
        self.load()
        db = AppRow._meta.database
        self._seen = (db.execute_sql("PRAGMA data_version").fetchone()[0], app_version(db))
        self._watch = asyncio.create_task(self._follow_other_processes(watch_interval), name="apps-watch")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    async def _follow_other_processes(self, interval: float) -> None:
        """Reload when another connection (the CLI revoking a token, the UI) changed the apps;
        a revoked token stops working here within `interval` seconds."""
        while True:
            await asyncio.sleep(interval)  # a polling period, not a wait for something awaitable
            try:
                self.follow_store()
            except Exception:  # the store closing under us at shutdown; the next tick retries
                log.debug("watching the apps table failed", exc_info=True)

    def follow_store(self) -> bool:
        """One look at the store; reload if another connection changed the apps since the last.

        SQLite's `data_version` moves whenever another connection commits anything (reading it
        costs microseconds); the trigger-kept `app_version` then tells whether that was the apps.
        Returns whether the cache was reloaded.
        """
        db = AppRow._meta.database
        data = db.execute_sql("PRAGMA data_version").fetchone()[0]
        if data == self._seen[0]:
            return False
        apps = app_version(db)
        changed = apps != self._seen[1]
        self._seen = (data, apps)
        if changed:
            self.load()
            self.reloaded.set()
        return changed

    def _cache(self, row: AppRow) -> AppIdentity:
        identity = AppIdentity(row.id, frozenset(row.scopes or ()), _limits_of(row))
        self._by_token = {}
        old = self._hash_of.pop(row.id, None)
        if old is not None:
            self._by_hash.pop(old, None)
        self._by_hash[row.token_hash] = identity
        self._hash_of[row.id] = row.token_hash
        return identity

    def _forget(self, app_id: str) -> None:
        self._by_token = {}
        old = self._hash_of.pop(app_id, None)
        if old is not None:
            self._by_hash.pop(old, None)

    # -- the hot path --------------------------------------------------------------------------
    def authenticate(self, token: str) -> AppIdentity | None:
        """The app a bearer token belongs to, or None for a wrong or revoked token."""
        identity = self._by_token.get(token)
        if identity is not None:
            return identity  # after an idle spell, a dict lookup costs a few µs where SHA-256 costs ~50
        digest = hash_token(token)
        identity = self._by_hash.get(digest)
        if identity is not None:
            if len(self._by_token) < _MAX_REMEMBERED:
                self._by_token[token] = identity
            return identity
        if len(token) != _TOKEN_LEN or not token.startswith(TOKEN_PREFIX):
            return None
        # Well-formed but unknown here: maybe another ByenatOS process registered it.
        row = AppRow.get_or_none((AppRow.token_hash == digest) & AppRow.revoked_at.is_null())
        return self._cache(row) if row is not None else None

    # -- management ----------------------------------------------------------------------------
    def register(
        self, name: str, scopes: list[str], *, replace: bool = False, limits: AppLimits | None = None
    ) -> tuple[AppInfo, str]:
        """Create an app and its token (returned once). `replace` re-issues an existing app's token."""
        if not isinstance(name, str):
            raise BadRequestError("name: a string naming the app")
        app_id = app_slug(name)
        scopes = check_scopes(scopes)
        if not scopes:
            raise BadRequestError(f"scopes: ask for at least one of {', '.join(SCOPES)}")
        if app_id == ADMIN_APP_ID:
            raise PermissionDeniedError(f"the app id {ADMIN_APP_ID!r} is reserved for ByenatOS itself")
        existing = AppRow.get_or_none(AppRow.id == app_id)
        if existing is not None and existing.revoked_at is None and not replace:
            raise ConflictError(
                f"an app named {app_id!r} is already registered; the user can re-issue its token "
                f"(`byenatos apps register {app_id} --replace`) or revoke it"
            )
        token = new_token()
        limits = limits or (_limits_of(existing) if existing is not None else AppLimits())
        row = AppRow(
            id=app_id,
            name=name.strip()[:200],
            token_hash=hash_token(token),
            token_hint=token[:8],
            scopes=scopes,
            builtin=False,
            created_at=time.time(),
            revoked_at=None,
            rate_limit_rpm=limits.rate_limit_rpm,
            daily_token_budget=limits.daily_token_budget,
            daily_cost_budget=limits.daily_cost_budget,
        )
        row.save(force_insert=existing is None)
        self._cache(row)
        return _info(row), token

    def revoke(self, app_id: str) -> AppInfo:
        row = self._row(app_id)
        if row.builtin:
            raise PermissionDeniedError("the ByenatOS admin app cannot be revoked (rotate its token instead)")
        if row.revoked_at is None:
            row.revoked_at = time.time()
            row.save()
        self._forget(app_id)
        return _info(row)

    def set_limits(
        self,
        app_id: str,
        *,
        rate_limit_rpm: Any = UNCHANGED,
        daily_token_budget: Any = UNCHANGED,
        daily_cost_budget: Any = UNCHANGED,
    ) -> AppInfo:
        row = self._row(app_id)
        for name, value, kind in (
            ("rate_limit_rpm", rate_limit_rpm, int),
            ("daily_token_budget", daily_token_budget, int),
            ("daily_cost_budget", daily_cost_budget, float),
        ):
            if value is UNCHANGED:
                continue
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or value < 0
                or (kind is int and value != int(value))
            ):
                raise BadRequestError(
                    f"{name}: a non-negative {'integer' if kind is int else 'number'} or null"
                )
            setattr(row, name, None if value is None else kind(value))
        row.save()
        if row.revoked_at is None:
            self._cache(row)
        return _info(row)

    def get(self, app_id: str) -> AppInfo:
        return _info(self._row(app_id))

    def list(self, *, include_revoked: bool = False) -> list[AppInfo]:
        query = AppRow.select().order_by(AppRow.id)
        if not include_revoked:
            query = query.where(AppRow.revoked_at.is_null())
        return [_info(r) for r in query]

    def identity(self, app_id: str) -> AppIdentity | None:
        digest = self._hash_of.get(app_id)
        return self._by_hash.get(digest) if digest else None

    def _row(self, app_id: str) -> AppRow:
        row = AppRow.get_or_none(AppRow.id == app_id)
        if row is None:
            known = ", ".join(r.id for r in AppRow.select(AppRow.id).order_by(AppRow.id)) or "none"
            raise NotFoundError(f"no app {app_id!r}; registered apps: {known}")
        return row

    # -- the user's admin token ----------------------------------------------------------------
    def admin_token(self) -> str:
        """The admin token from the keyring, made (or re-made, if the keyring lost it) on demand."""
        token = self.secrets.get(ADMIN_SECRET)
        row = AppRow.get_or_none(AppRow.id == ADMIN_APP_ID)
        if token and row is not None and row.token_hash == hash_token(token) and row.revoked_at is None:
            return token
        return self.rotate_admin_token()

    def rotate_admin_token(self) -> str:
        token = new_token()
        self.secrets.set(ADMIN_SECRET, token)  # first: a crash between the two is repaired by the next call
        row = AppRow(
            id=ADMIN_APP_ID,
            name="ByenatOS (CLI and app)",
            token_hash=hash_token(token),
            token_hint=token[:8],
            scopes=["admin"],
            builtin=True,
            created_at=time.time(),
        )
        row.save(force_insert=AppRow.get_or_none(AppRow.id == ADMIN_APP_ID) is None)
        self._cache(row)
        return token


class ConflictError(BadRequestError):
    status = 409
    code = "conflict"


def _limits_of(row: AppRow) -> AppLimits:
    return AppLimits(row.rate_limit_rpm, row.daily_token_budget, row.daily_cost_budget)


def _info(row: AppRow) -> AppInfo:
    return AppInfo(
        row.id,
        row.name,
        list(row.scopes or ()),
        row.builtin,
        row.created_at,
        row.revoked_at is not None,
        row.token_hint + "…",
        _limits_of(row),
    )
