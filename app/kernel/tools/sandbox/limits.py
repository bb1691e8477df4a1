"""The limits of one sandboxed run, and the few lines that apply them in the child.

The limits are resource rlimits, set by a tiny Python launcher that then `exec`s the program:
in the child itself (never in a `preexec_fn`, which is unsafe in a threaded parent) and inside
the namespaces, so they bind the sandboxed program and everything it starts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

# Runs as `python -I -S -c LAUNCHER <limits json> <program> <args…>`. A limit the platform
# refuses is skipped (it is reported as asked, and the wall clock and output caps still hold).
LAUNCHER = """\
import json, os, resource, sys
for name, (soft, hard) in json.loads(sys.argv[1]).items():
    which = getattr(resource, name, None)
    if which is not None:
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            pass
os.umask(0o077)
os.execvp(sys.argv[2], sys.argv[2:])
"""


@dataclass(frozen=True, slots=True)
class Limits:
    cpu_s: int = 10  # CPU seconds: SIGXCPU at the limit, SIGKILL a second later
    wall_s: float = 30.0  # wall-clock seconds, then the whole sandbox is killed
    memory_mb: int = 512  # address space (RLIMIT_AS: allocations beyond it fail)
    output_kb: int = 64  # stdout and stderr kept, each; the rest is read and dropped
    max_processes: int = 64  # RLIMIT_NPROC (not enforced for root: the kernel exempts it)
    file_mb: int = 64  # the largest file it may write (RLIMIT_FSIZE)
    open_files: int = 256

    def rlimits(self) -> dict[str, tuple[int, int]]:
        mb = 2**20
        return {
            "RLIMIT_CPU": (self.cpu_s, self.cpu_s + 1),
            "RLIMIT_AS": (self.memory_mb * mb, self.memory_mb * mb),
            "RLIMIT_NPROC": (self.max_processes, self.max_processes),
            "RLIMIT_FSIZE": (self.file_mb * mb, self.file_mb * mb),
            "RLIMIT_NOFILE": (self.open_files, self.open_files),
            "RLIMIT_CORE": (0, 0),
        }

    def launcher_args(self) -> list[str]:
        return ["-I", "-S", "-c", LAUNCHER, json.dumps(self.rlimits())]

    def to_dict(self) -> dict[str, float]:
        return asdict(self)
