"""Shrinking Qt's ICU data: the package format round-trips, the keep rule, and real ICU reading the
shrunk library (in a fresh process: a library already loaded under the same SONAME would be reused)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from installers import icudata
from installers.elf import ELFFile
from tests.installers.elf_fixtures import needs_cc


def _qt_lib() -> Path:
    spec = importlib.util.find_spec("PySide6")
    if spec is None:
        pytest.skip("PySide6 not installed")
    lib = Path(next(iter(spec.submodule_search_locations))) / "Qt" / "lib"
    if not (lib / "libicudata.so.73").is_file():
        pytest.skip("this PySide6 carries no ICU 73 (not Linux?)")
    return lib


@pytest.fixture(scope="module")
def qt_icu_blob() -> bytes:
    return ELFFile.open(_qt_lib() / "libicudata.so.73").symbol_bytes("icudt73_dat")


def test_the_package_round_trips_byte_for_byte(qt_icu_blob: bytes) -> None:
    package = icudata.read_package(qt_icu_blob)
    assert package.prefix == "icudt73l/" and len(package.items) > 3000
    assert icudata.write_package(package) == qt_icu_blob


def test_the_filtered_package_reads_back_sorted_and_small(qt_icu_blob: bytes) -> None:
    kept = icudata.filter_package(icudata.read_package(qt_icu_blob))
    again = icudata.read_package(icudata.write_package(kept))
    names = [i.name for i in again.items]
    assert names == sorted(names)  # ICU binary-searches the table of contents
    assert [i.data for i in again.items] == [i.data for i in sorted(kept.items, key=lambda i: i.name)]
    assert kept.size() < len(qt_icu_blob) / 5


@pytest.mark.parametrize(
    ("name", "size", "kept"),
    [
        ("coll/root.res", 300_000, True),
        ("coll/ucadata.icu", 570_000, True),
        ("coll/sv.res", 9_000, False),
        ("coll/de_.res", 100, False),
        ("coll/en_US_POSIX.res", 100, True),
        ("zone/en_GB.res", 4_000, True),
        ("zone/de.res", 40_000, False),
        ("zone/tzdbNames.res", 4_000, True),
        ("zone/res_index.res", 8_000, True),
        ("zoneinfo64.res", 140_000, True),
        ("supplementalData.res", 230_000, True),
        ("pool.res", 150_000, True),
        ("root.res", 50_000, True),
        ("fr_CA.res", 20_000, False),
        ("cnvalias.icu", 100_000, True),
        ("ibm-5348_P100-1997.cnv", 3_000, True),  # windows-1252
        ("ibm-943_P15A-2003.cnv", 200_000, False),  # Shift-JIS
        ("brkitr/line.brk", 80_000, False),
        ("unit/en.res", 50_000, False),
        ("curr/en.res", 30_000, False),
        ("rfc3491.spp", 50_000, False),
        ("unames.icu", 280_000, False),
        ("nfkc.nrm", 60_000, True),
    ],
)
def test_the_keep_rule(name: str, size: int, kept: bool) -> None:
    assert icudata.qt_needs(icudata.Item(name, b"\0" * size)) is kept


_ICU_PROBE = r"""
import ctypes, json, sys
folder, v = sys.argv[1], sys.argv[2]
uc = ctypes.CDLL(folder + "/libicuuc.so." + v)
i18n = ctypes.CDLL(folder + "/libicui18n.so." + v)
def fn(lib, name, restype):
    f = getattr(lib, name + "_" + v); f.restype = restype; return f
out = {}
err = ctypes.c_int(0)
for cp in ("windows-1252", "ISO-8859-15", "Shift_JIS", "GB18030"):
    err.value = 0
    fn(uc, "ucnv_open", ctypes.c_void_p)(cp.encode(), ctypes.byref(err))
    out[cp] = err.value <= 0
err.value = 0
coll = fn(i18n, "ucol_open", ctypes.c_void_p)(b"sv", ctypes.byref(err))
a, z = "Äpfel".encode(), b"zebra"
out["sv: Apfel vs zebra"] = fn(i18n, "ucol_strcollUTF8", ctypes.c_int)(
    ctypes.c_void_p(coll), a, len(a), z, len(z), ctypes.byref(err))
zone = (ctypes.c_uint16 * 14)(*"Europe/Berlin".encode("utf-16-le")[::2])
err.value = 0
cal = fn(i18n, "ucal_open", ctypes.c_void_p)(zone, 13, b"en", 0, ctypes.byref(err))
buf = (ctypes.c_uint16 * 128)()
n = fn(i18n, "ucal_getTimeZoneDisplayName", ctypes.c_int)(
    ctypes.c_void_p(cal), 0, b"en", buf, 128, ctypes.byref(err))
out["Europe/Berlin"] = bytes(bytearray(b for c in buf[:n] for b in c.to_bytes(2, "little"))).decode("utf-16-le")
print(json.dumps(out))
"""


def _probe(folder: Path) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", _ICU_PROBE, str(folder), "73"], capture_output=True, text=True, check=True
    )
    return json.loads(run.stdout)


@needs_cc
def test_real_icu_reads_the_shrunk_library(tmp_path: Path) -> None:
    """What Qt asks ICU for still works; what was cut falls back (root order) or is absent."""
    lib = _qt_lib()
    for name in ("libicuuc.so.73", "libicui18n.so.73", "libicudata.so.73"):
        shutil.copy2(lib / name, tmp_path / name)
    before = _probe(tmp_path)
    saved = icudata.shrink_library(tmp_path / "libicudata.so.73")
    after = _probe(tmp_path)
    assert saved > 20 * 2**20
    assert before["Shift_JIS"] and before["sv: Apfel vs zebra"] == 1  # Swedish sorts Ä after z
    assert after["windows-1252"] and after["ISO-8859-15"]
    assert not after["Shift_JIS"] and not after["GB18030"]
    assert after["sv: Apfel vs zebra"] == -1  # root (DUCET) order: Ä with A
    assert after["Europe/Berlin"] == before["Europe/Berlin"] == "Central European Standard Time"


def test_no_compiler_leaves_the_library_alone(tmp_path: Path, monkeypatch) -> None:
    lib = tmp_path / "libicudata.so.73"
    lib.write_bytes(b"not touched")
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    assert icudata.shrink_library(lib) == 0
    assert lib.read_bytes() == b"not touched"
