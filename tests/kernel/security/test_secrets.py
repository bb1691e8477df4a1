from __future__ import annotations

import os
import stat

import pytest

from app.kernel.errors import ConfigError
from app.kernel.security.secrets import EncryptedFileBackend, SecretStore


def test_file_fallback_round_trip_and_is_encrypted(tmp_path):
    store = SecretStore(tmp_path / "secrets.enc", backend="file")
    store.set("provider:openai", "sk-very-secret-123")
    assert store.get("provider:openai") == "sk-very-secret-123"
    assert store.is_fallback
    assert "encrypted file" in store.describe()
    raw = (tmp_path / "secrets.enc").read_bytes()
    assert b"sk-very-secret" not in raw
    # the key file is owner-only
    mode = stat.S_IMODE(os.stat(tmp_path / "secrets.key").st_mode)
    assert mode == 0o600


def test_file_fallback_survives_a_new_store_and_delete(tmp_path):
    SecretStore(tmp_path / "s.enc", backend="file").set("a", "1")
    other = SecretStore(tmp_path / "s.enc", backend="file")
    assert other.get("a") == "1"
    other.delete("a")
    other.delete("a")  # deleting twice is fine
    assert SecretStore(tmp_path / "s.enc", backend="file").get("a") is None


def test_wrong_key_is_a_readable_config_error(tmp_path):
    SecretStore(tmp_path / "s.enc", backend="file").set("a", "1")
    (tmp_path / "s.key").unlink()
    with pytest.raises(ConfigError, match="cannot decrypt"):
        EncryptedFileBackend(tmp_path / "s.enc").get("a")


def test_empty_secret_refused(tmp_path):
    with pytest.raises(ConfigError):
        SecretStore(tmp_path / "s.enc", backend="file").set("a", "")


def test_forcing_keyring_without_one_says_so(tmp_path, monkeypatch):
    import keyring
    from keyring.backends import fail

    monkeypatch.setattr(keyring, "get_keyring", lambda: fail.Keyring())
    with pytest.raises(ConfigError, match="no usable OS keyring"):
        SecretStore(tmp_path / "s.enc", backend="keyring").get("x")


def test_real_keyring_backend_used_when_available(tmp_path, monkeypatch):
    """A working keyring backend (a file-less in-memory one here) is preferred over the file."""
    import keyring
    from keyring.backend import KeyringBackend

    class MemoryKeyring(KeyringBackend):
        priority = 1
        data: dict = {}

        def get_password(self, service, username):
            return self.data.get((service, username))

        def set_password(self, service, username, password):
            self.data[(service, username)] = password

        def delete_password(self, service, username):
            self.data.pop((service, username), None)

    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    try:
        store = SecretStore(tmp_path / "s.enc")
        store.set("k", "v")
        assert store.get("k") == "v"
        assert not store.is_fallback
        assert "OS keyring" in store.describe()
        assert not (tmp_path / "s.enc").exists()
    finally:
        keyring.set_keyring(previous)


def test_two_processes_making_the_key_at_once_end_with_one_key(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from app.kernel.security.secrets import EncryptedFileBackend;"
            "b = EncryptedFileBackend(Path(sys.argv[1])); print(b._fernet().encrypt(b'x').decode())")
    path = tmp_path / "secrets.enc"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(6)]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err.decode()[-300:] for _, err in results]
    from cryptography.fernet import Fernet

    key = Fernet((tmp_path / "secrets.key").read_bytes().strip())
    assert all(key.decrypt(out.strip()) == b"x" for out, _ in results)  # all used the one key
    assert sorted(f.name for f in tmp_path.iterdir()) == ["secrets.key"]
