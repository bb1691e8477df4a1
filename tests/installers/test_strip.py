"""Post-build stripping skips the libraries auditwheel patched (stripping those breaks them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from installers.strip import strip_bundle, strippable


def _elf(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF" + b"\0" * 60)
    return path


def test_vendored_libs_and_non_elf_files_are_left_alone(tmp_path: Path) -> None:
    assert not strippable(_elf(tmp_path / "_internal" / "numpy.libs" / "libopenblas.so"), tmp_path)
    assert strippable(_elf(tmp_path / "_internal" / "numpy" / "_core" / "_multiarray.so"), tmp_path)
    text = tmp_path / "_internal" / "data.json"
    text.write_text("{}")
    assert not strippable(text, tmp_path)


@pytest.mark.skipif(shutil.which("strip") is None or shutil.which("cc") is None, reason="needs cc and strip")
def test_a_real_library_gets_smaller_and_still_loads(tmp_path: Path) -> None:
    src = tmp_path / "lib.c"
    src.write_text("int answer(void) { return 42; }\n")
    lib = tmp_path / "bundle" / "_internal" / "libanswer.so"
    lib.parent.mkdir(parents=True)
    subprocess.run(["cc", "-g", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    assert strip_bundle(tmp_path / "bundle") > 0
    import ctypes

    assert ctypes.CDLL(str(lib)).answer() == 42
