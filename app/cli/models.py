"""`byenatos models list|scan|add|remove|default`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from app.cli.output import err, human_bytes, human_tokens, table
from app.kernel.errors import AuthenticationError, ByenatosError, ConfigError, NotFoundError
from app.kernel.kernel import Kernel


async def models(args: argparse.Namespace) -> int:
    async with Kernel() as kernel:
        action = args.models_command
        if action == "list":
            return _list(kernel, args)
        if action == "scan":
            return await _scan(kernel)
        if action == "add":
            return await _add(kernel, args)
        if action == "remove":
            return await _remove(kernel, args.id)
        return await _default(kernel, args.model)


def _list(kernel: Kernel, args: argparse.Namespace) -> int:
    if args.providers:
        rows = [(p.id, p.kind, p.base_url or "", p.key_source if p.has_key else "no key", p.origin)
                for p in kernel.registry.providers()]
        if args.json:
            print(json.dumps([dict(zip(("id", "kind", "base_url", "key", "origin"), r, strict=True)) for r in rows]))
        else:
            print(table(["PROVIDER", "KIND", "URL", "KEY", "ORIGIN"], rows) if rows else "no providers yet")
        return 0
    specs = kernel.list_models()
    try:
        default = kernel.default_model().id
    except ByenatosError:
        default = None
    if args.json:
        print(json.dumps([s.model_dump(mode="json") | {"default": s.id == default} for s in specs], indent=2))
        return 0
    if not specs:
        print("no models yet: run `byenatos models scan`, or `byenatos models add openai --key-stdin`")
        return 0
    rows = []
    for s in specs:
        caps = ",".join(k for k, v in s.capabilities.model_dump().items() if v and k not in ("chat", "streaming"))
        rows.append(("*" if s.id == default else "", s.id, "local" if s.local else "cloud",
                     human_tokens(s.context_window), human_bytes(s.memory_bytes), caps))
    print(table(["", "MODEL", "WHERE", "CONTEXT", "SIZE", "CAPABILITIES"], rows))
    return 0


async def _scan(kernel: Kernel) -> int:
    report = await kernel.scan()
    for note in report.notes:
        print(f"  {note}")
    print(f"found {report.models} models from {len(set(report.providers))} providers")
    return 0


def _read_key(args: argparse.Namespace) -> str | None:
    if args.key:
        return args.key
    if args.key_stdin:
        key = getpass.getpass("API key: ") if sys.stdin.isatty() else sys.stdin.readline()
        key = key.strip()
        if not key:
            raise ConfigError("no API key was given on standard input")
        return key
    return None


async def _add(kernel: Kernel, args: argparse.Namespace) -> int:
    from app.kernel.models.presets import find_preset

    preset = find_preset(args.provider)
    pid = preset.id if preset else args.provider.lower()
    kind = args.kind or (preset.kind if preset else None)
    if kind is None:
        raise ConfigError(f"{args.provider!r} is not a known provider: give --kind (openai, anthropic, ollama, "
                          "litellm) and --url; `byenatos doctor` lists the known providers")
    url = args.url or (preset.base_url if preset else None)
    if url is None and kind in ("openai", "ollama") and not (preset and preset.litellm_provider):
        raise ConfigError(f"provider {pid!r} needs --url (the API root, e.g. http://127.0.0.1:1234/v1)")
    key = _read_key(args)
    key_env = args.key_env
    if preset and preset.key_required and not key and not key_env:
        if preset.key_env:
            key_env = preset.key_env  # fall back to the conventional variable, read at use
        else:
            raise ConfigError(f"{preset.display_name} needs an API key: --key-stdin or --key-env VAR")
    options = {"litellm_provider": preset.litellm_provider} if preset and preset.litellm_provider else {}
    existed = pid in kernel.registry.provider_ids()
    await kernel.add_provider(pid, kind, base_url=url, api_key=key, key_env=key_env, options=options)
    for name in args.model:
        kernel.registry.add_model(pid, name)
    if args.no_check:
        print(f"saved provider {pid} (not checked)")
        return 0
    try:
        n = await kernel.refresh_provider(pid)
    except AuthenticationError as e:
        if not existed:
            await kernel.remove_provider(pid)
        err(f"the key was refused by {pid}: {e.message}; provider not saved")
        return 1
    except ByenatosError as e:
        if not existed:
            await kernel.remove_provider(pid)
        err(f"cannot use {pid} at {url or 'its default address'}: {e}; provider not saved "
            "(--no-check saves it anyway)")
        return 1
    print(f"added provider {pid}: {n} models")
    if key and kernel.secrets.is_fallback:
        print(f"note: no OS keyring here; the key is in {kernel.secrets.describe()}")
    return 0


async def _remove(kernel: Kernel, ident: str) -> int:
    if ident in kernel.registry.provider_ids():
        await kernel.remove_provider(ident)
        print(f"removed provider {ident} and its models")
        return 0
    try:
        spec = kernel.registry.remove_model(ident)
    except NotFoundError:
        raise NotFoundError(f"{ident!r} is neither a provider nor a model; see `byenatos models list`") from None
    print(f"removed model {spec.id}")
    return 0


async def _default(kernel: Kernel, name: str | None) -> int:
    if name:
        spec = await kernel.set_default_model(name)
        print(f"default model: {spec.id}")
        return 0
    print(kernel.default_model().id)
    return 0
