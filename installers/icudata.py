"""Shrink Qt's ICU data library (libicudata, 31 MB) to the items Qt can ask ICU for.

Qt links ICU for four things only (the ICU symbols libQt6Core imports): case mapping
(`u_strToUpper/Lower`, tables compiled into libicuuc), collation (`ucol_*`: QCollator),
time zones (`ucal_*`: QTimeZone names) and legacy code pages (`ucnv_*`: QStringConverter beyond
the UTF and Latin-1 codecs Qt implements itself). Qt does its own text boundaries, IDNA and
number/date formatting (CLDR data compiled into QtCore), so ICU's break-iterator dictionaries,
unit/currency/language/region display names, transliterators, spell-out rules, stringprep
profiles, the spoof checker and Unicode character names are never read. The app's own text is
English, so locale tailorings of the used categories are cut to the English and root ones
(another locale falls back to root: DUCET order, English zone names), and of the code pages
only the single-byte ones (a few KB each) stay; the multi-byte CJK/EBCDIC tables go (Python's
own codecs, which the kernel uses, are untouched).

The data is an ICU "common data" package (format CmnD) exported from the library as the
symbol `icudt<N>_dat`; we read the package, keep the wanted items and link a new library with
the same SONAME and symbol (`cc -shared`, no other tool). No compiler: the library stays as is.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from installers.elf import ELFFile

_ALIGN = 16  # ICU aligns every item of a package to 16 bytes
_FILL = b"\xaa"  # and pads with this byte, as icupkg does (a package round-trips byte for byte)

# Whole categories Qt never reaches (see the module docstring).
DROP_TREES = ("brkitr/", "unit/", "curr/", "lang/", "region/", "translit/", "rbnf/")
DROP_SUFFIXES = (".spp", ".cfu")  # stringprep profiles (Qt has its own IDNA), the spoof checker
DROP_NAMES = ("unames.icu",)  # Unicode character names (u_charName)
KEEP_LOCALES = ("root", "en")  # locale bundles kept in the categories Qt uses
MAX_CODEPAGE_BYTES = 64 * 1024  # single-byte code pages are 1-5 KB; multi-byte ones 100-550 KB
_LOCALE_BUNDLE = re.compile(r"[a-z]{2,3}(?:_[A-Za-z0-9]*)*\.res")  # de.res, de_.res, zh_Hant_TW.res
_NOT_LOCALES = {"res_index.res", "pool.res"}


@dataclass(frozen=True)
class Item:
    name: str  # without the package prefix: "coll/root.res"
    data: bytes


@dataclass(frozen=True)
class Package:
    header: bytes  # the package's own data header, kept as is
    prefix: str  # "icudt73l/"
    items: tuple[Item, ...]

    def size(self) -> int:
        return len(write_package(self))


def read_package(blob: bytes) -> Package:
    header_size = struct.unpack_from("<H", blob, 0)[0]
    if blob[2:4] != b"\xda\x27" or blob[12:16] != b"CmnD" or blob[8] != 0:
        raise ValueError("not a little-endian ICU common data package (CmnD)")
    toc = header_size
    (count,) = struct.unpack_from("<I", blob, toc)
    entries = [struct.unpack_from("<II", blob, toc + 4 + 8 * i) for i in range(count)]
    names = []
    for name_off, _ in entries:
        end = blob.index(b"\0", toc + name_off)
        names.append(blob[toc + name_off : end].decode("ascii"))
    prefix = names[0].split("/", 1)[0] + "/" if names else ""
    items = []
    for i, (name, (_, data_off)) in enumerate(zip(names, entries, strict=True)):
        start = toc + data_off
        end = toc + entries[i + 1][1] if i + 1 < count else len(blob)
        items.append(Item(name.removeprefix(prefix), blob[start:end]))
    return Package(blob[:header_size], prefix, tuple(items))


def write_package(pkg: Package) -> bytes:
    """The package bytes: header, table of contents (sorted: ICU binary-searches it), names, items."""
    items = sorted(pkg.items, key=lambda it: pkg.prefix + it.name)
    names = b"".join((pkg.prefix + it.name).encode("ascii") + b"\0" for it in items)
    toc_size = 4 + 8 * len(items)
    data_start = _pad(toc_size + len(names))
    name_offsets, data_offsets, at, pos = [], [], toc_size, data_start
    for it in items:
        name_offsets.append(at)
        at += len(pkg.prefix + it.name) + 1
        data_offsets.append(pos)
        pos = _pad(pos + len(it.data))
    out = bytearray(pkg.header)
    out += struct.pack("<I", len(items))
    for n, d in zip(name_offsets, data_offsets, strict=True):
        out += struct.pack("<II", n, d)
    out += names
    for it, d in zip(items, data_offsets, strict=True):
        out += _FILL * (len(pkg.header) + d - len(out))
        out += it.data
    return bytes(out)


def _pad(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def qt_needs(item: Item) -> bool:
    """Whether Qt can ever read this item (the keep rule described in the module docstring)."""
    name = item.name
    if name.startswith(DROP_TREES) or name.endswith(DROP_SUFFIXES) or name in DROP_NAMES:
        return False
    if name.endswith(".cnv"):
        return len(item.data) <= MAX_CODEPAGE_BYTES
    base = name.rsplit("/", 1)[-1]
    if base in _NOT_LOCALES or not _LOCALE_BUNDLE.fullmatch(base):
        return True  # a table, not a locale bundle (supplementalData, zoneinfo64, ucadata…)
    return base.split("_")[0].removesuffix(".res") in KEEP_LOCALES


def filter_package(pkg: Package, keep: Callable[[Item], bool] = qt_needs) -> Package:
    return Package(pkg.header, pkg.prefix, tuple(it for it in pkg.items if keep(it)))


def symbol_name(lib: Path) -> str:
    """`icudt73_dat` for libicudata.so.73 (the symbol libicuuc imports)."""
    m = re.match(r"libicudata\.so\.(\d+)", lib.name)
    if not m:
        raise ValueError(f"{lib.name} is not libicudata.so.<major>")
    return f"icudt{m.group(1)}_dat"


def shrink_library(lib: Path, compiler: str | None = None) -> int:
    """Rewrite `lib` with only the items Qt needs; bytes saved (0 with no C compiler)."""
    cc = compiler or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return 0
    elf = ELFFile.open(lib)
    soname = elf.dynamic().soname or lib.name
    symbol = symbol_name(lib)
    package = filter_package(read_package(elf.symbol_bytes(symbol)))
    before = lib.stat().st_size
    with tempfile.TemporaryDirectory(prefix="byenatos-icu-") as tmp:
        dat = Path(tmp) / "data.dat"
        dat.write_bytes(write_package(package))
        asm = Path(tmp) / "data.S"
        # The same layout ICU's own genccode emits: one 16-aligned read-only exported object.
        asm.write_text(
            f"\t.section .rodata\n\t.globl {symbol}\n\t.type {symbol}, @object\n\t.balign 16\n"
            f'{symbol}:\n\t.incbin "{dat}"\n\t.size {symbol}, . - {symbol}\n'
            '\t.section .note.GNU-stack,"",@progbits\n'
        )
        out = Path(tmp) / lib.name
        subprocess.run(
            [cc, "-shared", "-nostdlib", f"-Wl,-soname,{soname}", "-o", str(out), str(asm)],
            check=True,
            capture_output=True,
        )
        check = read_package(ELFFile.open(out).symbol_bytes(symbol))
        if [i.name for i in check.items] != sorted(i.name for i in package.items):
            raise RuntimeError(f"icudata: the rebuilt {lib.name} does not read back")
        shutil.copyfile(out, lib)
    return before - lib.stat().st_size
