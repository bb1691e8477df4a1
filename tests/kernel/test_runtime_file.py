"""The runtime file: written and removed by its owner, stale ones ignored (app.kernel.runtime_file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from app.kernel import runtime_file
from app.kernel.config import Paths
from app.kernel.gateway.server import GatewayServer


@pytest.fixture
def paths(home) -> Paths:
    return Paths.default().ensure()


def test_it_lives_in_the_state_dir_of_the_home(home, paths):
    assert paths.runtime_file == home / "state" / "runtime.json"


def test_write_read_remove(paths):
    info = runtime_file.write(paths, host="0.0.0.0", port=18484, kind="serve")
    assert info.url == "http://127.0.0.1:18484"  # a wildcard bind is reached on loopback
    assert runtime_file.read(paths) == info
    assert oct(paths.runtime_file.stat().st_mode & 0o777) == "0o600"
    runtime_file.remove(paths)
    assert not paths.runtime_file.exists()
    assert runtime_file.read(paths) is None


def test_ipv6_addresses_are_bracketed():
    assert runtime_file.local_url("::", 9) == "http://[::1]:9"
    assert runtime_file.local_url("::1", 9) == "http://[::1]:9"


def _write(paths: Paths, **fields) -> None:
    data = {"pid": os.getpid(), "url": "http://127.0.0.1:9", "host": "127.0.0.1", "port": 9, "kind": "serve",
            "version": "0", "started": time.time(), **fields}
    paths.runtime_file.write_text(json.dumps(data))


def test_a_dead_pid_or_a_reused_one_is_stale(paths):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write(paths, pid=int(gone.stdout))
    assert runtime_file.read(paths) is None
    _write(paths, started=time.time() - 10 * 365 * 86400)  # this pid is younger than the file: reused
    assert runtime_file.read(paths) is None


def test_an_unreadable_file_is_no_instance(paths):
    paths.runtime_file.write_text("{not json")
    assert runtime_file.read(paths) is None
    paths.runtime_file.write_text(json.dumps({"pid": "x"}))
    assert runtime_file.read(paths) is None


def test_remove_leaves_another_process_file_alone(paths):
    _write(paths, pid=1)
    runtime_file.remove(paths)
    assert paths.runtime_file.exists()


async def test_find_needs_a_byenatos_answering_at_the_address(kernel, unused_tcp_port):
    paths = kernel.paths
    runtime_file.write(paths, host="127.0.0.1", port=unused_tcp_port, kind="serve")
    assert runtime_file.read(paths) is not None  # the pid (ours) is alive…
    assert runtime_file.find(paths) is None  # …but nothing answers there
    server = await GatewayServer(kernel, port=unused_tcp_port).start()
    try:
        found = await runtime_file.locate(paths)
        assert found is not None and found[0] == f"http://127.0.0.1:{unused_tcp_port}"
        assert found[1] is not None and found[1].pid == os.getpid()
    finally:
        await server.stop()
