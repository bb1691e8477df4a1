"""One sandboxed run: a fresh folder, the program under its limits and isolation, the output
capped, everything it started ended, the folder removed.

The program runs in a scrubbed environment (PATH, HOME and TMPDIR pointing into its folder, a
UTF-8 locale: no tokens, keys or proxies of ours leak in) and in a session of its own, so the
wall-clock limit ends the whole process group, not just its first process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.kernel.tools.sandbox.isolation import (
    CONFINEMENTS,
    INSIDE,
    Isolation,
    bwrap_args,
    bwrap_extra,
    choose,
    interpreter,
    unshare_args,
)
from app.kernel.tools.sandbox.limits import Limits

LANGUAGES = ("python", "shell")
DRAIN_AFTER_EXIT_S = 2.0  # output still arriving after the program ended (a child holding the pipe)
MEMORY_WORDS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory", "Out of memory")


@dataclass(slots=True)
class RunResult:
    exit_code: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    isolation: Isolation
    limits: Limits
    duration_ms: float
    stopped: str | None = None  # "time", "cpu", "memory", "killed": which limit ended it
    message: str = ""  # in words, for the model and the user
    files: list[dict[str, Any]] = field(default_factory=list)  # what it left in its folder

    def to_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "stdout": self.stdout, "stderr": self.stderr,
                "stdout_truncated": self.stdout_truncated, "stderr_truncated": self.stderr_truncated,
                "stopped": self.stopped, "message": self.message, "duration_ms": round(self.duration_ms, 1),
                **CONFINEMENTS[self.isolation].to_dict(), "limits": self.limits.to_dict(), "files": self.files}


def _program(language: str, work: Path, code: str) -> list[str]:
    """Write the code into the run's folder and name the program that runs it."""
    if language == "python":
        (work / "main.py").write_text(code, encoding="utf-8")
        # -u: what it printed before a limit ended it is kept (-I ignores PYTHONUNBUFFERED)
        return [interpreter(), "-I", "-u", "main.py"]
    (work / "main.sh").write_text(code, encoding="utf-8")
    shell = "/bin/bash" if Path("/bin/bash").exists() else "/bin/sh"
    return [shell, "main.sh"]


def _user_tasks() -> int:
    """Processes and threads of this user now: RLIMIT_NPROC counts them all (outside a user
    namespace), so a limit of 64 would stop a busy desktop user's sandbox at its first fork."""
    uid = os.getuid()
    count = 0
    try:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == uid:
                        count += len(os.listdir(f"/proc/{entry.name}/task"))
                except OSError:
                    continue
    except OSError:
        return 0
    return count


def _command(isolation: Isolation, limits: Limits, program: list[str], work: Path) -> tuple[list[str], Path]:
    """The full command line, and the folder the program sees as its own."""
    if isolation is Isolation.NONE:
        return program, work
    if isolation is not Isolation.BUBBLEWRAP:
        # No user namespace of its own (or an old kernel's global count): leave room for the
        # user's own processes, and bound what the run adds.
        limits = Limits(**{**limits.to_dict(), "max_processes": limits.max_processes + _user_tasks()})  # type: ignore[arg-type]
    launched = [interpreter(), *limits.launcher_args(), *program]
    if isolation is Isolation.BUBBLEWRAP:
        return [*bwrap_args(work, shutil.which("bwrap") or "bwrap", bwrap_extra()), *launched], Path(INSIDE)
    if isolation is Isolation.UNSHARE:
        return [*unshare_args(shutil.which("unshare") or "unshare"), *launched], work
    return launched, work


def _environment(home: Path) -> dict[str, str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home / ".tmp"),
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    if os.name == "nt":  # Windows programs do not start without these
        env.update({k: os.environ[k] for k in ("SYSTEMROOT", "COMSPEC", "PATHEXT") if k in os.environ})
        env["PATH"] = os.environ.get("PATH", "")
    return env


class _Pipes:
    """stdout and stderr as pipes of our own, read by the loop. With asyncio's own pipes,
    `Process.wait()` on Python 3.11 returns only once the pipes close too, and a background
    process the program left behind holds them open: the run would last until the wall clock
    ran out. Windows keeps asyncio's pipes (its loop reads only its own overlapped pipes)."""

    def __init__(self) -> None:
        self.own = os.name == "posix"
        self.child_out: int = -1
        self.child_err: int = -1
        self._fds: list[int] = []
        self._transports: list[asyncio.BaseTransport] = []
        if self.own:
            r_out, self.child_out = os.pipe()
            r_err, self.child_err = os.pipe()
            self._fds = [r_out, r_err]
        else:
            self.child_out = self.child_err = asyncio.subprocess.PIPE  # (== -1: nothing of ours to close)

    async def open(self, proc: asyncio.subprocess.Process) -> tuple[asyncio.StreamReader, asyncio.StreamReader]:
        if not self.own:
            assert proc.stdout is not None and proc.stderr is not None
            return proc.stdout, proc.stderr
        self._close_child_ends()  # the child has its copies: EOF comes when the last one closes
        loop = asyncio.get_running_loop()
        readers = []
        while self._fds:
            reader = asyncio.StreamReader()
            transport, _ = await loop.connect_read_pipe(lambda r=reader: asyncio.StreamReaderProtocol(r),
                                                        os.fdopen(self._fds.pop(0), "rb", buffering=0))
            self._transports.append(transport)
            readers.append(reader)
        return readers[0], readers[1]

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        if self.own:
            self._close_child_ends()

    def _close_child_ends(self) -> None:
        for fd in (self.child_out, self.child_err):
            if fd >= 0:
                os.close(fd)
        self.child_out = self.child_err = -1


async def _drain(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    kept = bytearray()
    over = False
    while chunk := await stream.read(65_536):
        room = cap - len(kept)
        if len(chunk) > room:
            over = True
        kept += chunk[:max(room, 0)]
    return bytes(kept), over


def _kill_group(pid: int) -> None:
    if os.name == "posix":
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


async def run(code: str, language: str, limits: Limits, *, isolation: str | None = "auto",
              stdin: str | None = None, base: Path | None = None) -> RunResult:
    """Run `code` (python or shell) in a fresh folder under `base` (the system's temp folder by
    default) with `limits`, in the strongest isolation `isolation` allows (see isolation.choose)."""
    if language not in LANGUAGES:
        raise ValueError(f"language: one of {', '.join(LANGUAGES)}")
    chosen = await asyncio.to_thread(choose, isolation)
    work = Path(await asyncio.to_thread(_make_folder, base))
    try:
        return await _run_in(work, code, language, limits, chosen, stdin)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


def _make_folder(base: Path | None) -> str:
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix="run-", dir=base)
    (Path(work) / ".tmp").mkdir()
    return work


def _prepare(work: Path, code: str, language: str, limits: Limits,
             isolation: Isolation) -> tuple[list[str], Path]:
    return _command(isolation, limits, _program(language, work, code), work)


async def _run_in(work: Path, code: str, language: str, limits: Limits, isolation: Isolation,
                  stdin: str | None) -> RunResult:
    command, seen_as = await asyncio.to_thread(_prepare, work, code, language, limits, isolation)
    cap = limits.output_kb * 1024
    started = time.monotonic()
    pipes = _Pipes()
    try:
        proc = await asyncio.create_subprocess_exec(
            *command, cwd=work, env=_environment(seen_as), start_new_session=True,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=pipes.child_out, stderr=pipes.child_err)
        streams = await pipes.open(proc)
    except BaseException:
        pipes.close()
        raise
    out = asyncio.ensure_future(_drain(streams[0], cap))
    err = asyncio.ensure_future(_drain(streams[1], cap))
    if stdin is not None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(stdin.encode())
            await proc.stdin.drain()
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), limits.wall_s)
    except TimeoutError:
        timed_out = True
        _kill_group(proc.pid)
        await proc.wait()
    except BaseException:  # cancelled (the tool's own timeout, a killed agent): end it all
        _kill_group(proc.pid)
        out.cancel()
        err.cancel()
        pipes.close()
        raise
    duration = (time.monotonic() - started) * 1000
    _kill_group(proc.pid)  # whatever it left running in its group ends with it
    done, pending = await asyncio.wait({out, err}, timeout=DRAIN_AFTER_EXIT_S)
    for task in pending:  # a process that escaped the group holds the pipe: stop listening
        task.cancel()
    pipes.close()
    stdout, stdout_over = out.result() if out in done else (b"", True)
    stderr, stderr_over = err.result() if err in done else (b"", True)
    result = RunResult(exit_code=None if timed_out else proc.returncode,
                       stdout=stdout.decode("utf-8", errors="replace"), stderr=stderr.decode("utf-8", errors="replace"),
                       stdout_truncated=stdout_over, stderr_truncated=stderr_over, isolation=isolation,
                       limits=limits, duration_ms=duration, files=await asyncio.to_thread(_left, work))
    _explain(result, timed_out)
    return result


# How a program ends at the CPU limit: SIGXCPU at the soft limit (bubblewrap and a shell report
# 128 + the signal). SIGKILL not from us (a wall-clock kill is `timed_out`): the hard CPU limit a
# second later, or the system short of memory.
_CPU_ENDS = (-signal.SIGXCPU, 128 + signal.SIGXCPU) if os.name == "posix" else ()
_KILLED = (-signal.SIGKILL, 128 + signal.SIGKILL) if os.name == "posix" else ()


def _explain(result: RunResult, timed_out: bool) -> None:
    code, lim = result.exit_code, result.limits
    if timed_out:
        result.stopped, result.message = "time", f"stopped: it ran longer than the time limit of {lim.wall_s:g} s"
    elif code is not None and code in _CPU_ENDS:
        result.stopped, result.message = "cpu", f"stopped: it used the CPU limit of {lim.cpu_s} s"
    elif code is not None and code in _KILLED:
        result.stopped, result.message = "killed", (
            f"stopped: it was killed (at the CPU limit of {lim.cpu_s} s, or by the system for lack of memory)")
    elif code and any(w in result.stderr for w in MEMORY_WORDS):
        result.stopped, result.message = "memory", f"stopped: it needed more than the memory limit of {lim.memory_mb} MB"
    elif code:
        result.message = f"exited with code {code}"
    else:
        result.message = "ok"
    dropped = [n for n, over in (("stdout", result.stdout_truncated), ("stderr", result.stderr_truncated)) if over]
    if dropped:
        result.message += f"; {' and '.join(dropped)} cut at {lim.output_kb} KB"


def _left(work: Path) -> list[dict[str, Any]]:
    """The files the run wrote in its folder (besides its own script), at most 50."""
    out: list[dict[str, Any]] = []
    for path in sorted(work.rglob("*")):
        rel = path.relative_to(work)
        if rel.parts[0] == ".tmp" or rel.as_posix() in ("main.py", "main.sh") or not path.is_file():
            continue
        out.append({"path": rel.as_posix(), "bytes": path.stat().st_size})
        if len(out) == 50:
            break
    return out
