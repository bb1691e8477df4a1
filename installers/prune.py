"""Post-build pruning of the Linux bundle: what PyInstaller's module-level lists cannot express.

1. Files dropped by glob (`bundle.DROP_FILES_LINUX`: Qt plugins for platforms and features the
   app never uses), then every shared library that only those files needed (read from DT_NEEDED,
   so a library still linked by anything that stays is kept).
2. Byte-identical copies in one folder (wheels cannot hold symlinks, so llama-cpp-python ships
   libllama.so and libllama.so.0 as two files) become relative symlinks.
3. Qt's ICU data library shrunk to what Qt can read (installers/icudata.py).

Libraries nothing links to (Python extensions, Qt plugins, libraries loaded with ctypes, the
interpreter the bootloader opens) are roots and are never removed by step 1's second half.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from installers.elf import ELFError, dynamic_info, is_elf


@dataclass
class PruneReport:
    dropped: list[str] = field(default_factory=list)  # by pattern
    orphans: list[str] = field(default_factory=list)  # libraries only the dropped files needed
    linked: list[str] = field(default_factory=list)  # duplicates turned into symlinks
    bytes_saved: int = 0

    def lines(self) -> list[str]:
        return [
            f"dropped {len(self.dropped)} files by pattern, {len(self.orphans)} libraries only they "
            f"needed, {len(self.linked)} duplicates linked: {self.bytes_saved / 2**20:.1f} MB",
            *(f"  - {p}" for p in self.dropped + self.orphans),
        ]


def _rel(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()


def matches(rel: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) for p in patterns)


class LinkGraph:
    """Which bundled ELF files need which others (by SONAME/file name, symlinks included)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.needs: dict[Path, set[Path]] = {}
        by_name: dict[str, set[Path]] = defaultdict(set)
        needed_names: dict[Path, tuple[str, ...]] = {}
        for path in root.rglob("*"):
            if path.is_symlink() or not path.is_file() or not is_elf(path):
                continue
            try:
                info = dynamic_info(path)
            except (ELFError, ValueError, IndexError):
                continue
            needed_names[path] = info.needed
            by_name[path.name].add(path)
            if info.soname:
                by_name[info.soname].add(path)
        for link in root.rglob("*"):
            if link.is_symlink():
                target = link.resolve()
                if target in needed_names:
                    by_name[link.name].add(target)
        for path, names in needed_names.items():
            self.needs[path] = {dep for n in names for dep in by_name.get(n, ()) if dep != path}
        self.needed_by_something = {dep for deps in self.needs.values() for dep in deps}

    def closure(self, start: set[Path]) -> set[Path]:
        seen, todo = set(start), list(start)
        while todo:
            for dep in self.needs.get(todo.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen


def orphans_of(graph: LinkGraph, dropped: set[Path], keep: list[str]) -> set[Path]:
    """Libraries reachable only through `dropped`: not needed by any root that stays.

    Libraries matching `keep` are roots too (they are dlopen()ed by name, which no ELF link
    shows), so what they link stays with them."""
    staying_roots = {p for p in graph.needs if p not in dropped and p not in graph.needed_by_something}
    staying_roots |= {p for p in graph.needs if p not in dropped and matches(_rel(p, graph.root), keep)}
    alive = graph.closure(staying_roots)
    candidates = graph.closure(dropped) - dropped
    return {p for p in candidates if p not in alive}


def drop_files(internal: Path, patterns: list[str], keep: list[str], report: PruneReport) -> None:
    graph = LinkGraph(internal)
    dropped = {
        p
        for p in internal.rglob("*")
        if not p.is_symlink() and p.is_file() and matches(_rel(p, internal), patterns)
    }
    orphans = orphans_of(graph, dropped, keep)
    for path in sorted(dropped | orphans):
        report.bytes_saved += path.stat().st_size
        (report.dropped if path in dropped else report.orphans).append(_rel(path, internal))
        path.unlink()
    for link in internal.rglob("*"):  # symlinks PyInstaller made to what is gone
        if link.is_symlink() and not link.exists():
            link.unlink()
    for folder in sorted(
        (d for d in internal.rglob("*") if d.is_dir() and not d.is_symlink()), key=lambda d: -len(d.parts)
    ):
        if not any(folder.iterdir()):  # a plugin folder whose every plugin went
            folder.rmdir()


def link_duplicates(internal: Path, report: PruneReport, min_size: int = 64 * 1024) -> None:
    """Identical large files in one folder: keep the one named by its SONAME, symlink the rest."""
    groups: dict[tuple[Path, int, str], list[Path]] = defaultdict(list)
    for path in internal.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.stat().st_size < min_size:
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        groups[(path.parent, path.stat().st_size, digest)].append(path)
    for (_folder, size, _digest), paths in groups.items():
        if len(paths) < 2:
            continue
        keep = _canonical(paths)
        for dup in paths:
            if dup == keep:
                continue
            dup.unlink()
            os.symlink(keep.name, dup)  # relative: the bundle moves to /opt or anywhere
            report.linked.append(_rel(dup, internal))
            report.bytes_saved += size


def _canonical(paths: list[Path]) -> Path:
    for p in paths:
        try:
            if is_elf(p) and dynamic_info(p).soname == p.name:
                return p
        except (ELFError, ValueError, IndexError):
            pass
    return min(paths, key=lambda p: (len(p.name), p.name))


def shrink_icu(internal: Path, report: PruneReport) -> None:
    from installers.icudata import shrink_library

    for lib in internal.rglob("libicudata.so.*"):
        if lib.is_symlink() or not lib.is_file():
            continue
        saved = shrink_library(lib)
        if saved:
            report.bytes_saved += saved
            report.dropped.append(f"{_rel(lib, internal)}: ICU data Qt never reads ({saved / 2**20:.1f} MB)")


def prune_bundle(bundle: Path) -> PruneReport:
    from installers import bundle as lists

    internal = bundle / "_internal"
    report = PruneReport()
    drop_files(internal, lists.DROP_FILES_LINUX, lists.KEEP_LIBS_LINUX, report)
    link_duplicates(internal, report)
    shrink_icu(internal, report)
    return report
