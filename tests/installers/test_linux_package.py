"""The .deb and tarball around a stand-in bundle: real dpkg-deb and tar, no PyInstaller build.

The full proof (build the real bundle, install it, run serve and the window, uninstall) is
installers/linux/verify.sh; `test_verify_the_real_package` runs it only when
BYENATOS_BUILD_INSTALLERS=1, because the build takes minutes.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from installers.linux import package

ROOT = Path(__file__).resolve().parents[2]
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")


@pytest.fixture
def fake_bundle(tmp_path: Path) -> Path:
    """A stand-in for dist/byenatos/: an executable that echoes how it was called."""
    b = tmp_path / "dist" / "byenatos"
    (b / "_internal").mkdir(parents=True)
    exe = b / "byenatos"
    exe.write_text('#!/bin/sh\necho "bundle called with: $*"\n')
    exe.chmod(0o755)
    (b / "_internal" / "data.txt").write_text("payload")
    return b


def test_the_launcher_finds_the_bundle_relative_to_itself(fake_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    package.stage_tree(fake_bundle, root)
    # Called through a symlink elsewhere, as a user's ~/bin link would.
    link = tmp_path / "elsewhere" / "byenatos"
    link.parent.mkdir()
    link.symlink_to(root / "usr" / "bin" / "byenatos")
    out = subprocess.run([str(link), "serve", "--port", "0"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "bundle called with: serve --port 0"


def test_the_control_file_has_the_fields_dpkg_needs() -> None:
    text = package.control("1.2.3", "amd64", 4242)
    fields = dict(line.split(": ", 1) for line in text.splitlines() if not line.startswith(" "))
    assert fields["Package"] == "byenatos" and fields["Version"] == "1.2.3"
    assert fields["Architecture"] == "amd64" and fields["Installed-Size"] == "4242"
    assert f"libc6 (>= {platform.libc_ver()[1]})" in fields["Depends"]  # the build machine's glibc
    assert "libxcb-cursor0" in fields["Depends"]  # Qt 6.5+'s xcb plugin will not load without it
    assert text.endswith("\n")


@needs_dpkg
def test_build_deb_lays_out_opt_usr_bin_desktop_and_icon(fake_bundle: Path, tmp_path: Path) -> None:
    deb = package.build_deb(fake_bundle, tmp_path / "dist", "0.9.1")
    assert deb.name == f"byenatos_0.9.1_{package.deb_arch()}.deb"
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    for path in (
        "./opt/byenatos/byenatos",
        "./opt/byenatos/_internal/data.txt",
        "./usr/bin/byenatos",
        "./usr/share/applications/byenatos.desktop",
        "./usr/share/icons/hicolor/scalable/apps/byenatos.svg",
    ):
        assert path in listing, path
    assert "root/root" in listing  # --root-owner-group: no build user's uid in the package
    version = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == "0.9.1"
    info = subprocess.run(["dpkg-deb", "-I", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "postrm" not in info and "prerm" not in info  # nothing runs on removal: user data is safe


@needs_dpkg
def test_install_and_remove_in_a_temporary_root(fake_bundle: Path, tmp_path: Path) -> None:
    from installers.linux.verify import install

    deb = package.build_deb(fake_bundle, tmp_path / "dist", "0.9.1")
    root = tmp_path / "root"
    install(deb, root)
    out = subprocess.run(
        [str(root / "usr" / "bin" / "byenatos"), "--version"], capture_output=True, text=True
    )
    assert out.stdout.strip() == "bundle called with: --version"
    subprocess.run(
        ["dpkg", f"--root={root}", "--force-not-root", "-r", "byenatos"], check=True, capture_output=True
    )
    assert not (root / "opt" / "byenatos").exists() and not (root / "usr" / "bin" / "byenatos").exists()


def test_the_tarball_is_one_folder_with_the_menu_helper(fake_bundle: Path, tmp_path: Path) -> None:
    out = package.build_tarball(fake_bundle, tmp_path / "dist", "0.9.1")
    with tarfile.open(out) as tar:
        names = tar.getnames()
        exe = tar.getmember(next(n for n in names if n.endswith("/byenatos") and n.count("/") == 1))
    top = {n.split("/")[0] for n in names}
    assert top == {out.name.removesuffix(".tar.gz")}
    assert exe.mode & 0o111  # still executable after unpacking
    assert any(n.endswith("/install-desktop-entry.sh") for n in names)


def test_the_menu_helper_adds_and_removes_a_user_entry(tmp_path: Path) -> None:
    portable = tmp_path / "byenatos-x"
    (portable / "share").mkdir(parents=True)
    shutil.copy2(ROOT / "installers" / "linux" / "byenatos.desktop", portable / "share" / "byenatos.desktop")
    shutil.copy2(ROOT / "resources" / "icons" / "byenatos.svg", portable / "share" / "byenatos.svg")
    shutil.copy2(
        ROOT / "installers" / "linux" / "install-desktop-entry.sh", portable / "install-desktop-entry.sh"
    )
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "data")}
    subprocess.run(
        ["sh", str(portable / "install-desktop-entry.sh")], env=env, check=True, capture_output=True
    )
    entry = (tmp_path / "data" / "applications" / "byenatos.desktop").read_text()
    assert f"Exec={portable}/byenatos" in entry
    subprocess.run(
        ["sh", str(portable / "install-desktop-entry.sh"), "--remove"],
        env=env,
        check=True,
        capture_output=True,
    )
    assert not (tmp_path / "data" / "applications" / "byenatos.desktop").exists()


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(
    os.environ.get("BYENATOS_BUILD_INSTALLERS") != "1",
    reason="builds the real bundle (minutes): set BYENATOS_BUILD_INSTALLERS=1",
)
def test_verify_the_real_package() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "installers.linux.verify", "--build", "--runs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify: all checks passed" in result.stdout
