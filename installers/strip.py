"""Strip debug symbols from the bundle's native libraries, except the ones auditwheel patched.

Libraries vendored by auditwheel live in `<package>.libs/` folders and were rewritten by patchelf;
stripping those breaks them (numpy's OpenBLAS: "ELF load command address/offset not
page-aligned"). Everything else loses its symbol tables safely (~70 MB on Linux).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ELF_MAGIC = b"\x7fELF"


def strippable(path: Path, bundle: Path) -> bool:
    rel = path.relative_to(bundle)
    if any(part.endswith(".libs") for part in rel.parts[:-1]):
        return False
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as fh:
        return fh.read(4) == ELF_MAGIC


def strip_bundle(bundle: Path) -> int:
    """Bytes saved. No `strip` on this machine: nothing done."""
    tool = shutil.which("strip")
    if tool is None:
        return 0
    saved = 0
    for path in sorted(bundle.rglob("*")):
        if not strippable(path, bundle):
            continue
        before = path.stat().st_size
        result = subprocess.run([tool, "--strip-unneeded", str(path)], capture_output=True)
        if result.returncode == 0:
            saved += before - path.stat().st_size
    return saved
