"""The Linux packages around dist/byenatos/: a .deb (dpkg-deb) and a portable tarball.

.deb layout: /opt/byenatos/ (the bundle), /usr/bin/byenatos (launcher), the .desktop entry and the
icon in hicolor. No maintainer scripts: installing copies files, removing deletes them, and the
user's data (~/.local/share/byenatos, the keyring) is never touched by the package manager.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ICON = ROOT / "resources" / "icons" / "byenatos.svg"

# Shared libraries the bundled Qt xcb/wayland plugins load from the system (not bundled by design:
# they follow the user's graphics stack). Names as in Debian 12 / Ubuntu 22.04+.
DEPENDS = [
    f"libc6 (>= {platform.libc_ver()[1] or '2.31'})",  # the bundle needs the build machine's glibc or newer
    "libgl1",
    "libegl1",
    "libfontconfig1",
    "libxkbcommon0",
    "libxkbcommon-x11-0",
    "libxcb-cursor0",
    "libxcb-icccm4",
    "libxcb-keysyms1",
    "libxcb-shape0",
    "libdbus-1-3",
]
RECOMMENDS = ["libwayland-client0", "gnome-keyring | kwalletmanager"]


def deb_arch() -> str:
    try:
        return subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def control(version: str, arch: str, installed_kb: int) -> str:
    return (
        "Package: byenatos\n"
        f"Version: {version}\n"
        f"Architecture: {arch}\n"
        "Maintainer: ByenatOS <byenatos@users.noreply.github.com>\n"
        f"Installed-Size: {installed_kb}\n"
        f"Depends: {', '.join(DEPENDS)}\n"
        f"Recommends: {', '.join(RECOMMENDS)}\n"
        "Section: utils\n"
        "Priority: optional\n"
        "Homepage: https://github.com/byenatos/byenatos\n"
        "Description: personal AI runtime for the desktop\n"
        " One local OpenAI-compatible socket for every LLM (local GGUF, Ollama,\n"
        " OpenAI, Anthropic and more), hot-swappable, with your own encrypted memory.\n"
    )


def stage_tree(bundle: Path, root: Path) -> None:
    """The installed file tree under `root` (what the .deb carries, minus DEBIAN/)."""
    opt = root / "opt" / "byenatos"
    shutil.copytree(bundle, opt, symlinks=True)
    bin_dir = root / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(HERE / "launcher.sh", bin_dir / "byenatos")
    (bin_dir / "byenatos").chmod(0o755)
    apps = root / "usr" / "share" / "applications"
    apps.mkdir(parents=True)
    shutil.copy2(HERE / "byenatos.desktop", apps / "byenatos.desktop")
    icons = root / "usr" / "share" / "icons" / "hicolor" / "scalable" / "apps"
    icons.mkdir(parents=True)
    shutil.copy2(ICON, icons / "byenatos.svg")


def build_deb(bundle: Path, dist: Path, version: str) -> Path:
    arch = deb_arch()
    stage = dist.parent / "build" / "deb" / "root"
    if stage.exists():
        shutil.rmtree(stage)
    stage_tree(bundle, stage)
    size_kb = sum(f.stat().st_size for f in stage.rglob("*") if f.is_file()) // 1024
    debian = stage / "DEBIAN"
    debian.mkdir()
    (debian / "control").write_text(control(version, arch, size_kb))
    out = dist / f"byenatos_{version}_{arch}.deb"
    # gzip: much faster than xz on a 2-core build box for a few MB of difference.
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z6", "--build", str(stage), str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


def build_tarball(bundle: Path, dist: Path, version: str) -> Path:
    """Portable build: unpack anywhere, run ./byenatos/byenatos; install-desktop-entry.sh is optional."""
    name = f"byenatos-{version}-linux-{platform.machine()}"
    out = dist / f"{name}.tar.gz"
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        tar.add(bundle, arcname=name)
        tar.add(HERE / "byenatos.desktop", arcname=f"{name}/share/byenatos.desktop")
        tar.add(ICON, arcname=f"{name}/share/byenatos.svg")
        tar.add(HERE / "install-desktop-entry.sh", arcname=f"{name}/install-desktop-entry.sh")
    return out
