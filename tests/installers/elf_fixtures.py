"""Tiny real shared libraries for the pruning tests, linked with the machine's C compiler."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler to link test libraries")


def make_lib(folder: Path, name: str, *, soname: str | None = None, needs: tuple[Path, ...] = ()) -> Path:
    """lib<name>.so exporting one function, linked against `needs` (DT_NEEDED = their SONAMEs)."""
    assert CC is not None
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / f"{name}.c"
    src.write_text(f"int {name.replace('-', '_')}_fn(void) {{ return 1; }}\n")
    out = folder / f"lib{name}.so"
    # --no-as-needed: record every dependency even though the test code calls none of them
    cmd = [
        CC,
        "-shared",
        "-fPIC",
        "-o",
        str(out),
        str(src),
        f"-Wl,-soname,{soname or out.name}",
        "-Wl,--no-as-needed",
    ]
    for dep in needs:
        cmd += [f"-L{dep.parent}", f"-l:{dep.name}"]
    subprocess.run(cmd, check=True, capture_output=True)
    src.unlink()
    return out
