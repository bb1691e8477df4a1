"""The ELF reader the post-build steps use, on libraries the compiler makes and on Qt's own."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from installers.elf import ELFError, ELFFile, dynamic_info, is_elf
from tests.installers.elf_fixtures import make_lib, needs_cc


@needs_cc
def test_soname_and_needed_of_a_linked_library(tmp_path: Path) -> None:
    base = make_lib(tmp_path, "base", soname="libbase.so.1")
    top = make_lib(tmp_path, "top", needs=(base,))
    info = dynamic_info(top)
    assert info.soname == "libtop.so"
    assert "libbase.so.1" in info.needed  # the linker records the dependency's SONAME
    assert dynamic_info(base).soname == "libbase.so.1"


def test_non_elf_files_are_told_apart(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert not is_elf(text)
    with pytest.raises(ELFError):
        ELFFile(b"MZ\x90\x00" + b"\0" * 60)


def test_qt_icu_data_symbol_is_a_common_data_package() -> None:
    spec = importlib.util.find_spec("PySide6")
    lib = (
        Path(next(iter(spec.submodule_search_locations))) / "Qt" / "lib" / "libicudata.so.73"
        if spec
        else None
    )
    if lib is None or not lib.is_file():
        pytest.skip("PySide6 with ICU 73 not installed")
    data = ELFFile.open(lib).symbol_bytes("icudt73_dat")
    assert data[12:16] == b"CmnD" and len(data) > 1_000_000
    with pytest.raises(ELFError):
        ELFFile.open(lib).symbol_bytes("no_such_symbol")
