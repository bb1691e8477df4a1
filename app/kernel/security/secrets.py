"""Provider keys and tokens: the OS keyring, or an encrypted file where there is none.

The keyring module is imported only when a secret is first touched (its backend discovery
costs ~0.7 s on Linux), so the daemon starts fast. Where no usable keyring backend exists
(headless servers, minimal desktops) secrets go to a Fernet-encrypted file whose key sits
beside it with owner-only permissions, and `describe()` says so plainly so `byenatos doctor`
and the UI can warn the user: it protects against casual reading and backups of the data
file, not against someone who can read the user's whole home directory.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Protocol

from app.kernel.errors import ConfigError

log = logging.getLogger(__name__)

SERVICE = "byenatos"
BACKEND_ENV = "BYENATOS_SECRETS"  # "keyring" | "file": force a backend (tests, portable installs)


class _Backend(Protocol):
    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> None: ...
    def delete(self, name: str) -> None: ...
    def describe(self) -> str: ...


class KeyringBackend:
    def __init__(self, keyring_module: object) -> None:
        self._kr = keyring_module

    def get(self, name: str) -> str | None:
        return self._kr.get_password(SERVICE, name)  # type: ignore[attr-defined]

    def set(self, name: str, value: str) -> None:
        self._kr.set_password(SERVICE, name, value)  # type: ignore[attr-defined]

    def delete(self, name: str) -> None:
        import keyring.errors

        try:
            self._kr.delete_password(SERVICE, name)  # type: ignore[attr-defined]
        except keyring.errors.PasswordDeleteError:
            pass  # already gone

    def describe(self) -> str:
        backend = self._kr.get_keyring()  # type: ignore[attr-defined]
        return f"OS keyring ({type(backend).__module__.rsplit('.', 1)[-1]}.{type(backend).__name__})"


class EncryptedFileBackend:
    """A JSON map of secrets, Fernet-encrypted, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key_path = path.with_suffix(".key")
        self._lock = threading.Lock()

    def _fernet(self):  # -> cryptography.fernet.Fernet
        from cryptography.fernet import Fernet

        if not self.key_path.exists():
            self.key_path.parent.mkdir(parents=True, exist_ok=True)
            # Written whole under a name of its own, then linked into place: two processes
            # starting on a new home at once (the daemon and a CLI command) both try, one key
            # wins, and neither ever reads a half-written one.
            tmp = self.key_path.with_name(f"{self.key_path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(Fernet.generate_key())
                    fh.flush()
                    os.fsync(fh.fileno())
                try:
                    os.link(tmp, self.key_path)
                except FileExistsError:
                    pass  # another process's key is in place: that one is the key
            finally:
                tmp.unlink(missing_ok=True)
        return Fernet(self.key_path.read_bytes().strip())

    def _load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        from cryptography.fernet import InvalidToken

        try:
            return json.loads(self._fernet().decrypt(self.path.read_bytes()))
        except (InvalidToken, ValueError) as e:
            raise ConfigError(
                f"cannot decrypt {self.path} (its key {self.key_path} is missing or different); "
                "remove both files and add your provider keys again"
            ) from e

    def _save(self, data: dict[str, str]) -> None:
        token = self._fernet().encrypt(json.dumps(data).encode())
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(token)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def get(self, name: str) -> str | None:
        with self._lock:
            return self._load().get(name)

    def set(self, name: str, value: str) -> None:
        with self._lock:
            data = self._load()
            data[name] = value
            self._save(data)

    def delete(self, name: str) -> None:
        with self._lock:
            data = self._load()
            if data.pop(name, None) is not None:
                self._save(data)

    def describe(self) -> str:
        return f"encrypted file {self.path} (no OS keyring available; key in {self.key_path.name}, owner-only)"


def _usable_keyring() -> object | None:
    import keyring
    from keyring.backends import fail

    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    name = type(backend).__module__
    if "null" in name or ("chainer" in name and not getattr(backend, "backends", None)):
        return None
    return keyring


class SecretStore:
    """The one place secrets are read and written. Backend chosen on first use."""

    def __init__(self, fallback_file: Path, *, backend: str | None = None) -> None:
        self._fallback_file = fallback_file
        self._forced = backend or os.environ.get(BACKEND_ENV)
        self._backend: _Backend | None = None

    @property
    def backend(self) -> _Backend:
        if self._backend is None:
            kr = None if self._forced == "file" else _usable_keyring()
            if kr is None and self._forced == "keyring":
                raise ConfigError("BYENATOS_SECRETS=keyring but no usable OS keyring backend was found")
            self._backend = KeyringBackend(kr) if kr is not None else EncryptedFileBackend(self._fallback_file)
            if kr is None:
                log.info("no OS keyring: secrets are kept in %s", self._fallback_file)
        return self._backend

    @property
    def is_fallback(self) -> bool:
        return isinstance(self.backend, EncryptedFileBackend)

    def get(self, name: str) -> str | None:
        return self.backend.get(name)

    def set(self, name: str, value: str) -> None:
        if not value:
            raise ConfigError("refusing to store an empty secret")
        self.backend.set(name, value)

    def delete(self, name: str) -> None:
        self.backend.delete(name)

    def describe(self) -> str:
        return self.backend.describe()
