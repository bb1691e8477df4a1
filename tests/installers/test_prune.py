"""Post-build pruning on a stand-in bundle of real linked libraries: dropped plugins take the
libraries only they linked, shared ones stay, duplicates become symlinks."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from installers import bundle, prune
from tests.installers.elf_fixtures import make_lib, needs_cc


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    """_internal/ with: a plugin to drop, the library only it links, a library it shares with a
    plugin that stays, and a root nothing links (as ctypes-loaded libraries are)."""
    internal = tmp_path / "byenatos" / "_internal"
    only = make_lib(internal, "gtkish")  # like libgtk: only the dropped theme links it
    deep = make_lib(internal, "pangoish")
    only_deep = make_lib(internal, "cairoish", needs=(deep,))
    shared = make_lib(internal, "glibish")
    plugins = internal / "PySide6" / "Qt" / "plugins"
    make_lib(plugins / "platformthemes", "qgtk3", needs=(only, only_deep, shared))
    make_lib(plugins / "platforms", "qxcb", needs=(shared,))
    make_lib(internal / "llama_cpp" / "lib", "llama")  # loaded with ctypes: a root
    (internal / "libgtkish.so.0").symlink_to("libgtkish.so")  # as PyInstaller links SONAMEs
    return internal


@needs_cc
def test_a_dropped_plugin_takes_the_libraries_only_it_linked(stand_in: Path) -> None:
    report = prune.PruneReport()
    prune.drop_files(stand_in, ["PySide6/Qt/plugins/platformthemes/libqgtk3.so"], [], report)
    assert report.dropped == ["PySide6/Qt/plugins/platformthemes/libqgtk3.so"]
    assert sorted(report.orphans) == ["libcairoish.so", "libgtkish.so", "libpangoish.so"]
    assert (stand_in / "libglibish.so").is_file()  # still linked by the xcb plugin
    assert (stand_in / "PySide6/Qt/plugins/platforms/libqxcb.so").is_file()
    assert (stand_in / "llama_cpp/lib/libllama.so").is_file()  # nothing links it: a root, kept
    assert not os.path.lexists(stand_in / "libgtkish.so.0")  # no dangling symlink left
    assert not (stand_in / "PySide6/Qt/plugins/platformthemes").exists()  # nor an empty folder
    assert report.bytes_saved > 0


@needs_cc
def test_the_keep_list_overrides_the_orphan_rule(stand_in: Path) -> None:
    report = prune.PruneReport()
    prune.drop_files(stand_in, ["PySide6/Qt/plugins/platformthemes/*"], ["libpangoish.so"], report)
    assert "libpangoish.so" not in report.orphans and (stand_in / "libpangoish.so").is_file()


@needs_cc
def test_a_kept_library_keeps_what_it_links_when_its_only_linker_goes(tmp_path: Path) -> None:
    """llama.cpp's case: libmtmd (dropped) links libllama, which ctypes loads by name (kept), which
    links libggml in its folder and libgomp beside the interpreter: all of those must stay."""

    def bundle_in(folder: Path) -> tuple[Path, list[Path]]:
        internal = folder / "_internal"
        gomp = make_lib(internal, "gompish")
        ggml = make_lib(internal / "llama_cpp" / "lib", "ggmlish", needs=(gomp,))
        llama = make_lib(internal / "llama_cpp" / "lib", "llamaish", needs=(ggml,))
        make_lib(internal / "llama_cpp" / "lib", "mtmdish", needs=(llama,))
        return internal, [llama, ggml, gomp]

    internal, libs = bundle_in(tmp_path / "kept")
    report = prune.PruneReport()
    prune.drop_files(internal, ["llama_cpp/lib/libmtmdish.so"], ["llama_cpp/lib/*"], report)
    assert report.dropped == ["llama_cpp/lib/libmtmdish.so"] and report.orphans == []
    assert all(lib.is_file() for lib in libs)
    internal, libs = bundle_in(tmp_path / "not-kept")  # without the pattern: taken as its orphans
    report = prune.PruneReport()
    prune.drop_files(internal, ["llama_cpp/lib/libmtmdish.so"], [], report)
    assert len(report.orphans) == 3 and not any(lib.exists() for lib in libs)


@needs_cc
def test_identical_copies_become_symlinks_to_the_soname(tmp_path: Path) -> None:
    lib = tmp_path / "llama_cpp" / "lib"
    real = make_lib(lib, "llama", soname="libllama.so.0")
    big = real.read_bytes() + b"\0" * 70_000  # over the size floor, still a loadable ELF
    real.write_bytes(big)
    shutil.copy2(real, lib / "libllama.so.0")
    (lib / "other.bin").write_bytes(b"x" * 70_000)
    report = prune.PruneReport()
    prune.link_duplicates(tmp_path, report)
    assert (lib / "libllama.so.0").is_file() and not (lib / "libllama.so.0").is_symlink()
    assert (lib / "libllama.so").is_symlink() and os.readlink(lib / "libllama.so") == "libllama.so.0"
    assert (lib / "libllama.so").read_bytes() == big
    assert not (lib / "other.bin").is_symlink()
    assert report.linked == ["llama_cpp/lib/libllama.so"] and report.bytes_saved == len(big)


def _pyside_dir() -> Path:
    spec = importlib.util.find_spec("PySide6")
    if spec is None:
        pytest.skip("PySide6 not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def test_every_drop_pattern_still_names_a_file() -> None:
    """A renamed plugin or library in a new PySide6 or llama-cpp-python would silently stay in
    the bundle: fail here instead."""
    pyside = _pyside_dir()
    if not (pyside / "Qt" / "plugins" / "platforms" / "libqxcb.so").is_file():
        pytest.skip("not a Linux PySide6")
    site = pyside.parent
    files = [p.relative_to(site).as_posix() for p in (pyside / "Qt" / "plugins").rglob("*.so")]
    files += [p.relative_to(site).as_posix() for p in (site / "llama_cpp" / "lib").glob("*.so*")]
    llama = (site / "llama_cpp").is_dir()  # the optional `local` extra
    for pattern in (p for p in bundle.DROP_FILES_LINUX if llama or not p.startswith("llama_cpp/")):
        assert any(prune.matches(f, [pattern]) for f in files), pattern


def test_llama_cpps_libraries_are_kept_whatever_links_them() -> None:
    for lib in ("libllama.so.0", "libggml.so.0", "libggml-base.so.0", "libggml-cpu.so.0"):
        assert prune.matches(f"llama_cpp/lib/{lib}", bundle.KEEP_LIBS_LINUX)


def test_the_platform_plugins_a_desktop_needs_are_never_dropped() -> None:
    for name in bundle.QT_PLATFORMS_LINUX:
        assert not prune.matches(f"PySide6/Qt/plugins/platforms/libq{name}.so", bundle.DROP_FILES_LINUX)
    for kept in (
        "imageformats/libqsvg.so",
        "iconengines/libqsvgicon.so",
        "platformthemes/libqxdgdesktopportal.so",
    ):
        assert not prune.matches(f"PySide6/Qt/plugins/{kept}", bundle.DROP_FILES_LINUX)
