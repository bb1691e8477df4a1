"""Which isolation a sandboxed run gets, and the command line that applies it.

Strongest first:
- bubblewrap: new namespaces for everything (no network at all, its own pids, uts, ipc), the
  system folders bound read-only, the run's own folder the only writable place (also seen as
  /tmp), no home folder, no repository, no ByenatOS data; uid nobody; every capability dropped.
- unshare: `unshare -r -n -p -f --kill-child`: no network and its own pids (killing it kills
  all it started), but the file system is the user's own: it can read and write what they can.
- rlimits only: the limits and nothing else.
The choice is probed once per process (a real run of the interpreter inside), so "bubblewrap"
is only reported when a sandbox actually started here.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from app.kernel.tools.base import ToolError

ENV = "BYENATOS_SANDBOX"  # overrides the `sandbox.isolation` setting: auto | bubblewrap | unshare | rlimits-only
INSIDE = "/sandbox"  # where the run's folder is seen inside bubblewrap
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What programs need of /etc; the rest (shadow, ssh keys, the machine's secrets) stays out.
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "passwd", "group",
       "nsswitch.conf", "mime.types", "bash.bashrc", "profile", "inputrc", "python3", "python3.11")


class Isolation(StrEnum):
    BUBBLEWRAP = "bubblewrap"
    UNSHARE = "unshare"
    RLIMITS = "rlimits-only"
    NONE = "none"  # no resource limits either (Windows): wall clock and output caps only


@dataclass(frozen=True, slots=True)
class Confinement:
    """What one isolation guarantees: the result reports it, and never more."""

    isolation: Isolation
    network_blocked: bool
    filesystem_confined: bool  # writes only in its own folder; home, repository, data not visible
    processes_contained: bool  # ending the run ends everything it started

    def to_dict(self) -> dict[str, object]:
        return {"isolation": self.isolation.value, "network_blocked": self.network_blocked,
                "filesystem_confined": self.filesystem_confined, "processes_contained": self.processes_contained}


CONFINEMENTS = {
    Isolation.BUBBLEWRAP: Confinement(Isolation.BUBBLEWRAP, True, True, True),
    Isolation.UNSHARE: Confinement(Isolation.UNSHARE, True, False, True),
    Isolation.RLIMITS: Confinement(Isolation.RLIMITS, False, False, False),
    Isolation.NONE: Confinement(Isolation.NONE, False, False, False),
}


def interpreter() -> str:
    """The Python that runs sandboxed code (and the launcher that sets the limits): ours, or a
    python3 on PATH when ByenatOS is a frozen bundle."""
    if not getattr(sys, "frozen", False):
        return sys.executable
    found = shutil.which("python3") or shutil.which("python")
    if found is None:
        raise ToolError("run_code needs a Python interpreter, and none was found on this machine")
    return found


def _interpreter_dirs() -> list[Path]:
    """The folders the interpreter and its packages live in, bound read-only inside bubblewrap."""
    dirs = {Path(sys.prefix), Path(sys.base_prefix), Path(interpreter()).resolve().parent.parent}
    return sorted(d for d in dirs if not any(d == Path(s) or Path(s) in d.parents for s in SYSTEM))


def bwrap_args(work: Path, bwrap: str = "bwrap", extra: tuple[str, ...] = ()) -> list[str]:
    """bubblewrap's command line for a run in `work` (the program follows)."""
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", "65534", "--gid", "65534", "--hostname", "sandbox", *extra]
    for top in SYSTEM:
        path = Path(top)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            args += ["--ro-bind", top, top]
    for name in ETC:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    args += ["--bind", str(work / ".tmp"), "/tmp"]
    for d in _interpreter_dirs():
        args += ["--ro-bind", str(d), str(d)]
    # The root is bubblewrap's own tmpfs (mount points for the binds above): read-only too, so
    # the run's folder and /tmp (also its folder) are the only places it can write.
    args += ["--bind", str(work), INSIDE, "--chdir", INSIDE, "--proc", "/proc", "--dev", "/dev",
             "--remount-ro", "/", "--"]
    return args


UNSHARE_ARGS = ("-r", "-n", "-p", "-f", "--kill-child")


def unshare_args(unshare: str = "unshare") -> list[str]:
    # A shell between unshare and the program: unshare (util-linux 2.38) fails re-raising a
    # child's fatal signal ("sigprocmask unblock failed") and exits 1, hiding a CPU-limit end;
    # the shell reports it as 128 + the signal instead (`; exit` keeps it from exec-ing).
    return [unshare, *UNSHARE_ARGS, "/bin/sh", "-c", '"$@"; exit $?', "sandbox"]


@functools.cache
def _bwrap_extra() -> tuple[str, ...] | str:
    """The bubblewrap options that work here (`--disable-userns` needs 0.8), or why none do."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    reason = ""
    for extra in (("--disable-userns",), ()):
        reason = _probe(lambda work, extra=extra: bwrap_args(work, bwrap, extra))
        if not reason:
            return extra
    return f"bubblewrap did not start a sandbox here: {reason}"


@functools.cache
def _unshare_problem() -> str:
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare is not installed"
    reason = _probe(lambda work: unshare_args(unshare))
    return f"unshare could not make a network namespace here: {reason}" if reason else ""


def _probe(prefix) -> str:  # type: ignore[no-untyped-def]
    """'' when `prefix` + our interpreter runs here, else the reason in a few words."""
    with tempfile.TemporaryDirectory(prefix="byenatos-probe-") as tmp:
        work = Path(tmp)
        (work / ".tmp").mkdir()
        try:
            done = subprocess.run([*prefix(work), interpreter(), "-I", "-S", "-c", "pass"],
                                  capture_output=True, timeout=10, stdin=subprocess.DEVNULL, cwd=work)
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        if done.returncode != 0:
            return (done.stderr.decode(errors="replace").strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return ""


def problem(isolation: Isolation) -> str:
    """Why `isolation` cannot be used here ('' when it can). Probes once per process."""
    if isolation is Isolation.BUBBLEWRAP:
        if not sys.platform.startswith("linux"):
            return "bubblewrap runs on Linux only"
        found = _bwrap_extra()
        return found if isinstance(found, str) else ""
    if isolation is Isolation.UNSHARE:
        return "unshare runs on Linux only" if not sys.platform.startswith("linux") else _unshare_problem()
    if isolation is Isolation.RLIMITS:
        return "" if os.name == "posix" else "resource limits need a POSIX system"
    return ""


def bwrap_extra() -> tuple[str, ...]:
    found = _bwrap_extra()
    assert not isinstance(found, str)
    return found


def choose(wanted: str | None) -> Isolation:
    """The isolation for a run: `wanted` (a setting, the env var overriding it), or with
    "auto" the strongest that works. A named one that does not work is a ToolError: the user
    asked for it, so it is never quietly weakened."""
    wanted = os.environ.get(ENV) or wanted or "auto"
    if wanted != "auto":
        try:
            chosen = Isolation(wanted)
        except ValueError:
            raise ToolError(f"unknown sandbox isolation {wanted!r}; use auto, bubblewrap, unshare or "
                            "rlimits-only") from None
        why = problem(chosen)
        if why:
            raise ToolError(f"the sandbox is set to {wanted}, which cannot run here: {why}")
        return chosen
    for candidate in (Isolation.BUBBLEWRAP, Isolation.UNSHARE, Isolation.RLIMITS):
        if not problem(candidate):
            return candidate
    return Isolation.NONE
