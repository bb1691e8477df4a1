"""uv.lock read without uv (installers/lockfile.py): the pins for this environment, the drift report
the test suite prints in its header, and what set-up installs first and removes."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from installers import lockfile

ROOT = Path(__file__).resolve().parents[2]

LOCK = """
version = 1
requires-python = ">=3.11"

[[package]]
name = "byenatos"
version = "0.1.0"
source = { editable = "." }

[[package]]
name = "Numpy"
version = "2.4.6"
source = { registry = "https://pypi.org/simple" }
resolution-markers = ["python_full_version < '3.12'"]
sdist = { url = "https://x/numpy-2.4.6.tar.gz", hash = "sha256:aaa" }
wheels = [{ url = "https://x/numpy-2.4.6-cp311.whl", hash = "sha256:bbb" }]

[[package]]
name = "numpy"
version = "2.5.5"
source = { registry = "https://pypi.org/simple" }
resolution-markers = ["python_full_version == '3.12.*'", "python_full_version >= '3.13'"]
wheels = [{ url = "https://x/numpy-2.5.5-cp312.whl", hash = "sha256:ccc" }]

[[package]]
name = "litellm"
version = "1.108.14"
source = { registry = "https://pypi.org/simple" }
wheels = [{ url = "https://x/litellm.whl", hash = "sha256:ddd" }]

[[package]]
name = "my-fork"
version = "1.0"
source = { git = "https://x/fork.git" }
"""

PY311 = {"python_full_version": "3.11.7", "python_version": "3.11"}
PY313 = {"python_full_version": "3.13.1", "python_version": "3.13"}


def test_the_lock_is_read_with_names_normalised_and_local_sources_left_out():
    pins = lockfile.read_lock(LOCK)
    assert [(p.name, p.version) for p in pins] == [
        ("numpy", "2.4.6"),
        ("numpy", "2.5.5"),
        ("litellm", "1.108.14"),
    ]
    assert pins[0].hashes == ("sha256:aaa", "sha256:bbb") and pins[2].markers == ()


def test_the_locked_version_is_the_one_for_this_python():
    pins = lockfile.read_lock(LOCK)
    assert lockfile.locked_versions(pins, PY311) == {"numpy": {"2.4.6"}, "litellm": {"1.108.14"}}
    assert lockfile.locked_versions(pins, PY313)["numpy"] == {"2.5.5"}


def test_without_packaging_every_listed_version_counts(monkeypatch):
    monkeypatch.setitem(sys.modules, "packaging.markers", None)  # import fails
    versions = lockfile.locked_versions(lockfile.read_lock(LOCK), PY311)
    assert versions["numpy"] == {"2.4.6", "2.5.5"} and versions["litellm"] == {"1.108.14"}


def test_drift_names_what_moved_and_what_the_lock_does_not_know():
    locked = lockfile.locked_versions(lockfile.read_lock(LOCK), PY311)
    installed = {"numpy": "2.4.6", "litellm": "1.110.2", "httpx2": "2.16.2", "byenatos": "0.1.0"}
    drifts = lockfile.compare(installed, locked)
    assert drifts == [
        lockfile.Drift("httpx2", "2.16.2", None),
        lockfile.Drift("litellm", "1.110.2", "1.108.14"),
    ]
    lines = lockfile.report_lines(drifts, "uv.lock")
    assert lines[0] == "packages: 1 differ from uv.lock, 1 not in it (installed, locked):"
    assert lines[1:] == ["  litellm 1.110.2 (locked 1.108.14)", "  httpx2 2.16.2 (not in uv.lock)"]
    assert lockfile.compare({"numpy": "2.4.6", "litellm": "1.108.14"}, locked) == []
    assert lockfile.report_lines([], "uv.lock") == ["packages: as pinned in uv.lock"]
    assert lockfile.report_lines(None, "no uv.lock") == ["packages: no uv.lock to compare with"]


def test_a_deleted_lock_is_read_from_the_last_commit(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "uv.lock").write_text(LOCK)
    git("add", "uv.lock")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lock")
    assert lockfile.lock_text(tmp_path) == (LOCK, "uv.lock")
    (tmp_path / "uv.lock").unlink()
    text, source = lockfile.lock_text(tmp_path)
    assert text == LOCK and "HEAD" in source
    assert lockfile.lock_text(tmp_path / "elsewhere")[0] is None


def test_pins_are_hashed_requirement_lines_pip_reads():
    lines = lockfile.pins(["litellm", "NumPy"], LOCK).splitlines()
    assert lines[0] == "litellm==1.108.14 --hash=sha256:ddd"
    assert lines[1] == "numpy==2.4.6 ; (python_full_version < '3.12') --hash=sha256:aaa --hash=sha256:bbb"
    assert lines[2].startswith("numpy==2.5.5 ; (python_full_version == '3.12.*') or (python_full_version >= ")
    with pytest.raises(SystemExit, match="pins no uv"):
        lockfile.pins(["uv"], LOCK)


def test_set_up_removes_what_is_neither_asked_for_nor_as_locked(monkeypatch):
    installed = {"numpy": "2.4.6", "httpx2": "2", "litellm": "1.108.14", "byenatos": "0"}
    monkeypatch.setattr(lockfile, "installed_versions", lambda: installed)
    requirements = (
        "# header\nnumpy==2.4.6 ; python_full_version < '3.12' \\\n    --hash=sha256:aaa\n    # via x\n"
    )
    assert lockfile.listed_names(requirements) == {"numpy"}
    # litellm is not asked for, but at its locked version (another extra's): it stays
    assert lockfile.extraneous(requirements, LOCK) == ["httpx2"]
    installed["litellm"] = "1.110.2"  # left by an unlocked run
    assert lockfile.extraneous(requirements, LOCK) == ["httpx2", "litellm"]


def test_this_environment_is_compared_with_the_repositorys_lock():
    """The command the header runs; in a locked venv it says the packages are as pinned."""
    run = subprocess.run(
        [sys.executable, "-m", "installers.lockfile", "drift"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and run.stdout.startswith("packages: "), run.stderr


# -- the repository's own lock ---------------------------------------------------------------


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_lock_pins_every_requirement_of_pyproject():
    """A requirement added to pyproject.toml without `scripts/lock.sh` shows here (set-up refuses it too)."""
    from packaging.requirements import Requirement

    project = _project()
    text, source = lockfile.lock_text(ROOT)  # the last commit's in a drift run that deleted it
    assert text is not None, source
    names = {lockfile.canonical(p.name) for p in lockfile.read_lock(text)}
    wanted = [*project["project"]["dependencies"], *project["dependency-groups"]["setup"]]
    wanted += [r for extra in project["project"]["optional-dependencies"].values() for r in extra]
    missing = {lockfile.canonical(Requirement(r).name) for r in wanted} - names
    assert not missing, f"run scripts/lock.sh: uv.lock has no {sorted(missing)}"


def test_set_up_installs_the_build_requirements_it_builds_the_project_with():
    """setup.sh installs the project with --no-build-isolation: [build-system] must be in the setup group."""
    from packaging.requirements import Requirement

    project = _project()
    setup_group = {
        Requirement(r).name: Requirement(r).specifier for r in project["dependency-groups"]["setup"]
    }
    for requirement in map(Requirement, project["build-system"]["requires"]):
        assert requirement.name in setup_group, requirement
        assert str(setup_group[requirement.name]) == str(requirement.specifier), requirement
    assert "pip" in setup_group and "uv" in setup_group


def test_the_installer_build_refuses_a_venv_that_differs_from_the_lock(monkeypatch, capsys):
    from installers import build

    moved = [lockfile.Drift("litellm", "1.110.2", "1.108.14")]
    monkeypatch.setattr(lockfile, "drift", lambda: (moved, "uv.lock"))
    with pytest.raises(SystemExit, match=r"differ from uv\.lock"):
        build.check_locked(allow_drift=False)
    build.check_locked(allow_drift=True)  # said on purpose: built, and the drift is printed
    assert "litellm 1.110.2 (locked 1.108.14)" in capsys.readouterr().err
    monkeypatch.setattr(lockfile, "drift", lambda: ([lockfile.Drift("ipython", "9.0", None)], "uv.lock"))
    build.check_locked(allow_drift=False)  # a package the lock does not know is only named
    assert "ipython 9.0 (not in uv.lock)" in capsys.readouterr().err
    monkeypatch.setattr(lockfile, "drift", lambda: ([], "uv.lock"))
    build.check_locked(allow_drift=False)
    assert capsys.readouterr().err == ""


# -- the workflows -----------------------------------------------------------------------------


def _workflow(name: str) -> dict:
    import yaml

    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


def test_every_installer_build_venv_is_set_up_from_the_lock():
    for name, job in _workflow("installers.yml")["jobs"].items():
        runs = [step.get("run", "") for step in job["steps"]]
        setup = next((i for i, r in enumerate(runs) if "scripts/setup.sh" in r), None)
        build = next(i for i, r in enumerate(runs) if "-m installers build" in r)
        assert setup is not None and setup < build, name
        assert "dist" in runs[setup] and "BYENATOS_UNLOCKED" not in " ".join(runs), name
        assert not [r for r in runs if "pip install" in r], f"{name}: an install outside the lock"


def test_the_drift_workflow_runs_the_tests_on_the_newest_versions_weekly():
    wf = _workflow("drift.yml")
    triggers = wf[True]  # YAML 1.1 reads the key `on` as True
    assert "workflow_dispatch" in triggers and triggers["schedule"][0]["cron"]
    runs = [step.get("run", "") for job in wf["jobs"].values() for step in job["steps"]]
    assert any("BYENATOS_UNLOCKED=1" in r and "./test.sh" in r for r in runs)
    assert any("installers.lockfile drift" in r for r in runs)
