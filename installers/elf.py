"""Just enough ELF reading for the bundle's post-build steps: a shared library's SONAME and
DT_NEEDED entries, and where one dynamic symbol's bytes sit in the file.

Standard library only (64-bit little-endian ELF, what Linux x86-64 and aarch64 bundles hold), so
the pruning can be checked by tests on real libraries without ldd, binutils or a build.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"\x7fELF"
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_SONAME = 0, 1, 5, 14
_PT_LOAD, _PT_DYNAMIC = 1, 2
_SHT_DYNSYM = 11


class ELFError(ValueError):
    """Not an ELF file this module can read (32-bit, big-endian, truncated…)."""


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


@dataclass(frozen=True)
class DynamicInfo:
    soname: str | None
    needed: tuple[str, ...]


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == MAGIC
    except OSError:
        return False


class ELFFile:
    def __init__(self, data: bytes) -> None:
        if data[:4] != MAGIC:
            raise ELFError("not an ELF file")
        if data[4] != 2 or data[5] != 1:
            raise ELFError("only 64-bit little-endian ELF is supported")
        self.data = data
        (self._phoff, self._shoff) = struct.unpack_from("<QQ", data, 0x20)
        (self._phentsize, self._phnum, self._shentsize, self._shnum, self._shstrndx) = struct.unpack_from(
            "<HHHHH", data, 0x36
        )

    @classmethod
    def open(cls, path: Path) -> ELFFile:
        return cls(path.read_bytes())

    def _segments(self) -> list[tuple[int, int, int, int]]:
        """(type, offset, vaddr, filesz) of each program header."""
        out = []
        for i in range(self._phnum):
            base = self._phoff + i * self._phentsize
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
                "<IIQQQQ", self.data, base
            )
            out.append((p_type, p_offset, p_vaddr, p_filesz))
        return out

    def _file_offset(self, vaddr: int) -> int:
        for p_type, offset, start, size in self._segments():
            if p_type == _PT_LOAD and start <= vaddr < start + size:
                return offset + (vaddr - start)
        raise ELFError(f"address {vaddr:#x} is in no loaded segment")

    def sections(self) -> list[Section]:
        raw = []
        for i in range(self._shnum):
            base = self._shoff + i * self._shentsize
            name, s_type, _flags, addr, offset, size, link, _info, _align, entsize = struct.unpack_from(
                "<IIQQQQIIQQ", self.data, base
            )
            raw.append((name, s_type, addr, offset, size, link, entsize))
        if not raw:
            return []
        names_at = raw[self._shstrndx][3]
        return [Section(self._cstr(names_at + r[0]), *r[1:]) for r in raw]

    def _cstr(self, at: int) -> str:
        end = self.data.index(b"\0", at)
        return self.data[at:end].decode("utf-8", "replace")

    def dynamic(self) -> DynamicInfo:
        """SONAME and NEEDED names (empty for a static executable or a non-library)."""
        dyn = [s for s in self._segments() if s[0] == _PT_DYNAMIC]
        if not dyn:
            return DynamicInfo(None, ())
        _t, offset, _v, size = dyn[0]
        entries: list[tuple[int, int]] = []
        for at in range(offset, offset + size, 16):
            tag, value = struct.unpack_from("<qQ", self.data, at)
            if tag == _DT_NULL:
                break
            entries.append((tag, value))
        strtab = next((v for t, v in entries if t == _DT_STRTAB), None)
        if strtab is None:
            return DynamicInfo(None, ())
        strings = self._file_offset(strtab)
        needed = tuple(self._cstr(strings + v) for t, v in entries if t == _DT_NEEDED)
        soname = next((self._cstr(strings + v) for t, v in entries if t == _DT_SONAME), None)
        return DynamicInfo(soname, needed)

    def symbol_bytes(self, name: str) -> bytes:
        """The bytes a defined dynamic symbol (an exported data object) spans."""
        sections = self.sections()
        for sym in (s for s in sections if s.type == _SHT_DYNSYM):
            strings = sections[sym.link].offset
            for at in range(sym.offset, sym.offset + sym.size, sym.entsize or 24):
                st_name, _info, _other, shndx, value, size = struct.unpack_from("<IBBHQQ", self.data, at)
                if shndx != 0 and self._cstr(strings + st_name) == name:
                    start = self._file_offset(value)
                    return self.data[start : start + size]
        raise ELFError(f"no defined symbol {name!r}")


def dynamic_info(path: Path) -> DynamicInfo:
    return ELFFile.open(path).dynamic()
