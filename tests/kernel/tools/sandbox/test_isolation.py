"""Choosing the isolation: the strongest that works, a forced one or an error, never a quiet
step down; and without bubblewrap or unshare on the machine, the fallback says so."""

from __future__ import annotations

import shutil
import sys

import pytest

from app.kernel.tools.base import ToolError
from app.kernel.tools.sandbox import CONFINEMENTS, ENV, Isolation, Limits, choose, isolation, problem, run

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="namespaces are Linux's")


@pytest.fixture
def fresh_probes():
    """Probe again in this test (and forget what it found afterwards)."""
    isolation._bwrap_extra.cache_clear()
    isolation._unshare_problem.cache_clear()
    yield
    isolation._bwrap_extra.cache_clear()
    isolation._unshare_problem.cache_clear()


@pytest.fixture
def bare_path(tmp_path, monkeypatch, fresh_probes):
    """A PATH with neither bwrap nor unshare on it."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv(ENV, raising=False)


def test_auto_picks_the_strongest_that_works(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    expected = next(i for i in (Isolation.BUBBLEWRAP, Isolation.UNSHARE, Isolation.RLIMITS) if not problem(i))
    assert choose("auto") is expected
    assert choose(None) is expected


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_bubblewrap_is_used_where_it_is_installed(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert problem(Isolation.BUBBLEWRAP) == ""
    assert choose("auto") is Isolation.BUBBLEWRAP


def test_the_environment_variable_overrides_the_setting(monkeypatch):
    monkeypatch.setenv(ENV, "rlimits-only")
    assert choose("bubblewrap") is Isolation.RLIMITS


def test_an_unknown_isolation_is_refused(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ToolError, match="unknown sandbox isolation 'chroot'"):
        choose("chroot")


def test_without_bwrap_or_unshare_auto_falls_back_to_rlimits_only(bare_path):
    assert "not installed" in problem(Isolation.BUBBLEWRAP)
    assert "not installed" in problem(Isolation.UNSHARE)
    assert choose("auto") is Isolation.RLIMITS


def test_a_forced_isolation_that_cannot_run_is_an_error_not_a_weaker_one(bare_path):
    with pytest.raises(ToolError, match=r"set to bubblewrap, which cannot run here: bubblewrap .*not installed"):
        choose("bubblewrap")
    with pytest.raises(ToolError, match="set to unshare, which cannot run here"):
        choose("unshare")


async def test_a_run_in_the_fallback_reports_rlimits_only_and_still_stops_a_hog(bare_path):
    result = await run("while True:\n    pass\n", "python", Limits(cpu_s=1, wall_s=60), isolation="auto")
    report = result.to_dict()
    assert report["isolation"] == "rlimits-only" and report["stopped"] == "cpu"
    assert report["network_blocked"] is False and report["filesystem_confined"] is False


async def test_a_broken_bwrap_is_probed_not_trusted(tmp_path, monkeypatch, fresh_probes):
    """A bwrap that is installed but cannot make namespaces (a container without user namespaces)
    is not reported as bubblewrap: the probe runs it."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    monkeypatch.delenv(ENV, raising=False)
    assert "No permissions to creating new namespace" in problem(Isolation.BUBBLEWRAP)
    assert choose("auto") is not Isolation.BUBBLEWRAP


def test_what_each_isolation_claims():
    claims = {i.value: (c.network_blocked, c.filesystem_confined, c.processes_contained)
              for i, c in CONFINEMENTS.items()}
    assert claims == {"bubblewrap": (True, True, True), "unshare": (True, False, True),
                      "rlimits-only": (False, False, False), "none": (False, False, False)}
