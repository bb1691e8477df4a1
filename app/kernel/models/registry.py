"""The registry: which providers exist, which models they offer, and what each model is.

It is the only writer of the provider and model tables. Keys never enter the database:
a provider row holds `key_ref`, the name of its secret in the SecretStore, or for
providers found through the environment the variable's name (`env:OPENAI_API_KEY`),
read at the moment a driver is built.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.kernel.canonical import ModelSpec, ProviderConfig, model_id
from app.kernel.errors import ConfigError, ModelNotFoundError, NotFoundError
from app.kernel.security.secrets import SecretStore
from app.kernel.store.tables import ModelRow, ProviderRow

_SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ENV_PREFIX = "env:"


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """A provider as the CLI and UI show it (no secrets)."""

    id: str
    kind: str
    base_url: str | None
    has_key: bool
    key_source: str  # "keyring", "file", "env:OPENAI_API_KEY" or "none"
    origin: str
    enabled: bool
    options: dict[str, Any]


class Registry:
    def __init__(self, secrets: SecretStore, *, kinds: Iterable[str]) -> None:
        self.secrets = secrets
        self.kinds = frozenset(kinds)  # the driver kinds a provider may have (app.kernel.drivers.DRIVER_KINDS)
        self._models: dict[str, ModelSpec] | None = None  # cache: read on every request

    # -- providers -------------------------------------------------------------------------
    def add_provider(
        self,
        id: str,
        kind: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        key_env: str | None = None,
        options: dict[str, Any] | None = None,
        origin: str = "user",
    ) -> ProviderInfo:
        if not _SLUG.match(id):
            raise ConfigError(f"provider id {id!r} must be lower-case letters, digits, '.', '_' or '-'")
        if kind not in self.kinds:
            raise ConfigError(f"unknown provider kind {kind!r}; known kinds: {', '.join(sorted(self.kinds))}")
        if base_url is not None and not re.match(r"^https?://[^\s/]+", base_url):
            raise ConfigError(f"base URL {base_url!r} must start with http:// or https://")
        key_ref = None
        if api_key:
            key_ref = f"provider:{id}"
            self.secrets.set(key_ref, api_key)
        elif key_env:
            key_ref = ENV_PREFIX + key_env
        existing = ProviderRow.get_or_none(ProviderRow.id == id)
        if existing is not None and existing.origin == "user" and origin != "user":
            return self.provider(id)  # discovery never overwrites what the user set up
        ProviderRow.insert(
            id=id, kind=kind, base_url=base_url, key_ref=key_ref or (existing.key_ref if existing else None),
            options=options or {}, enabled=True, origin=origin, created_at=time.time(),
        ).on_conflict_replace().execute()
        return self.provider(id)

    def remove_provider(self, id: str) -> None:
        row = ProviderRow.get_or_none(ProviderRow.id == id)
        if row is None:
            raise NotFoundError(f"no provider {id!r}; known: {', '.join(self.provider_ids()) or 'none'}")
        if row.key_ref and not row.key_ref.startswith(ENV_PREFIX):
            self.secrets.delete(row.key_ref)
        ModelRow.delete().where(ModelRow.provider == id).execute()
        row.delete_instance()
        self._models = None

    def provider_ids(self) -> list[str]:
        return [r.id for r in ProviderRow.select(ProviderRow.id).order_by(ProviderRow.id)]

    def providers(self) -> list[ProviderInfo]:
        return [self._info(r) for r in ProviderRow.select().order_by(ProviderRow.id)]

    def provider(self, id: str) -> ProviderInfo:
        row = ProviderRow.get_or_none(ProviderRow.id == id)
        if row is None:
            raise NotFoundError(f"no provider {id!r}; known: {', '.join(self.provider_ids()) or 'none'}")
        return self._info(row)

    def _info(self, row: ProviderRow) -> ProviderInfo:
        ref = row.key_ref
        if not ref:
            source = "none"
        elif ref.startswith(ENV_PREFIX):
            source = ref
        else:
            source = "secret"
        has_key = bool(ref) and (not ref.startswith(ENV_PREFIX) or bool(os.environ.get(ref[len(ENV_PREFIX):])))
        return ProviderInfo(row.id, row.kind, row.base_url, has_key, source, row.origin, row.enabled, row.options or {})

    def provider_config(self, id: str, *, timeout: float = 600.0, connect_timeout: float = 5.0) -> ProviderConfig:
        """Everything a driver needs, with the key resolved just now (never cached on disk)."""
        row = ProviderRow.get_or_none(ProviderRow.id == id)
        if row is None:
            raise NotFoundError(f"no provider {id!r}")
        key = None
        if row.key_ref:
            if row.key_ref.startswith(ENV_PREFIX):
                key = os.environ.get(row.key_ref[len(ENV_PREFIX):])
            else:
                key = self.secrets.get(row.key_ref)
        return ProviderConfig(
            id=row.id, kind=row.kind, base_url=row.base_url, api_key=key, options=dict(row.options or {}),
            timeout=timeout, connect_timeout=connect_timeout,
        )

    # -- models ------------------------------------------------------------------------------
    def upsert_models(self, provider: str, specs: Iterable[ModelSpec], *, origin: str = "discovered",
                      replace: bool = False) -> int:
        """Record the models a provider offers. `replace` drops discovered ones no longer offered."""
        now = time.time()
        specs = list(specs)
        with ProviderRow._meta.database.atomic():
            if replace:
                keep = [s.id for s in specs]
                ModelRow.delete().where(
                    (ModelRow.provider == provider) & (ModelRow.origin == "discovered") & ModelRow.id.not_in(keep)
                ).execute()
            for spec in specs:
                ModelRow.insert(
                    id=spec.id, provider=provider, name=spec.name, spec=spec.model_dump(mode="json"),
                    origin=origin, last_seen=now,
                ).on_conflict_replace().execute()
        self._models = None
        return len(specs)

    def add_model(self, provider: str, name: str, **facts: Any) -> ModelSpec:
        """A model the user names by hand (cloud APIs that cannot list theirs, or unlisted ones)."""
        info = self.provider(provider)
        spec = ModelSpec(id=model_id(provider, name), name=name, provider=provider, **facts)
        spec = _enrich(spec, info.kind)
        self.upsert_models(provider, [spec], origin="user")
        return spec

    def remove_model(self, id_or_name: str) -> ModelSpec:
        spec = self.find_model(id_or_name)
        ModelRow.delete().where(ModelRow.id == spec.id).execute()
        self._models = None
        return spec

    def all_models(self) -> dict[str, ModelSpec]:
        if self._models is None:
            rows = ModelRow.select(ModelRow.spec).join(ProviderRow).where(ProviderRow.enabled == True)  # noqa: E712
            self._models = {s.id: s for s in (ModelSpec.model_validate(r.spec) for r in rows)}
        return self._models

    def models(self) -> list[ModelSpec]:
        return sorted(self.all_models().values(), key=lambda s: s.id)

    def find_model(self, name: str) -> ModelSpec:
        """A model by id ("ollama/llama3.2") or by bare name when only one provider offers it."""
        models = self.all_models()
        spec = models.get(name)
        if spec is not None:
            return spec
        matches = [s for s in models.values() if s.name == name]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ModelNotFoundError(
                f"model {name!r} is offered by several providers; name one of: "
                + ", ".join(sorted(s.id for s in matches)),
                available=sorted(s.id for s in matches),
            )
        available = sorted(models)
        hint = ", ".join(available[:20]) + (" …" if len(available) > 20 else "") if available else "none yet — run `byenatos models scan` or add a provider"
        raise ModelNotFoundError(f"unknown model {name!r}; available: {hint}", available=available)


def _enrich(spec: ModelSpec, kind: str) -> ModelSpec:
    """Fill cloud facts (window, prices, capabilities) from the catalog where it knows the model."""
    try:
        from app.kernel.models import catalog
    except ImportError:  # catalog not available in this build
        return spec
    return catalog.enrich(spec)
