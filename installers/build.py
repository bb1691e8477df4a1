"""One command for a release build on the current OS.

    .venv/bin/python -m installers build             # bundle + installer(s) for this OS
    .venv/bin/python -m installers build --skip-bundle   # re-package an existing dist/byenatos/

The bundle is built from the venv's packages, which must be the versions uv.lock pins (what CI
tested; scripts/setup.sh installs them): a venv that differs is refused unless --allow-drift (or
BYENATOS_UNLOCKED=1, as in a drift run) says that is meant.

Linux: dist/byenatos_<version>_<arch>.deb and dist/byenatos-<version>-linux-<arch>.tar.gz.
Windows: dist/ByenatOS-<version>-setup.exe (needs Inno Setup's iscc on PATH).
macOS: dist/ByenatOS-<version>.dmg (installers/macos/make_dmg.sh; signs when CODESIGN_IDENTITY is set).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from installers.paths import BUILD, BUNDLE, DIST, ROOT


def app_version() -> str:
    """The version the bundle reports: pyproject's, through the installed metadata (one source)."""
    from app import version

    return version()


def check_locked(allow_drift: bool) -> None:
    """Refuse to bundle packages at versions other than uv.lock's (unless told to)."""
    from installers import lockfile

    found, source = lockfile.drift()
    lines = lockfile.report_lines(found, source)
    moved = [d for d in found or [] if d.locked]
    if found is None or found:
        print("\n".join(f"installers: {line}" for line in lines), file=sys.stderr, flush=True)
    if moved and not allow_drift:
        raise SystemExit(
            "installers: this venv's packages differ from uv.lock; install the lock "
            "(BYENATOS_EXTRAS=gui,local,dist scripts/setup.sh) or pass --allow-drift"
        )


def build_bundle() -> Path:
    """dist/byenatos/ from byenatos.spec. Refuses a venv with torch: it would balloon the bundle."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        raise SystemExit("installers: torch is installed in this venv; build from one without it")
    _ensure_embedding_model()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    icon = _platform_icon()
    if icon:
        env["BYENATOS_ICON"] = str(icon)
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--clean",
        "--distpath",
        str(DIST),
        "--workpath",
        str(BUILD / "pyinstaller"),
        str(ROOT / "byenatos.spec"),
    ]
    print("»", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    if sys.platform.startswith("linux"):
        from installers.prune import prune_bundle
        from installers.strip import strip_bundle

        for line in prune_bundle(BUNDLE).lines():
            print(line, flush=True)
        print(f"stripped {strip_bundle(BUNDLE) / 2**20:.0f} MB of debug symbols", flush=True)
    return BUNDLE


def _ensure_embedding_model() -> None:
    from installers import bundle
    from installers.paths import embedding_model_dir

    if not all((embedding_model_dir() / name).is_file() for name in bundle.EMBEDDING_FILES):
        subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_embedding_model.py")], check=True)


def _platform_icon() -> Path | None:
    """.ico (Windows) or .icns (macOS) from the SVG; PyInstaller converts a PNG when Pillow is there."""
    if sys.platform not in ("win32", "darwin"):
        return None
    png = BUILD / "byenatos-512.png"
    try:
        render_png(ROOT / "resources" / "icons" / "byenatos.svg", png, 512)
    except Exception as e:  # no icon is better than no build
        print(f"installers: no app icon ({e})", file=sys.stderr)
        return None
    return png


def render_png(svg: Path, out: Path, size: int) -> None:
    """Render the SVG icon with Qt's own SVG renderer (offscreen: works on headless build machines)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    QSvgRenderer(str(svg)).render(painter)
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out)):
        raise OSError(f"could not write {out}")


def build_installers(version: str) -> list[Path]:
    if sys.platform.startswith("linux"):
        from installers.linux.package import build_deb, build_tarball

        return [build_deb(BUNDLE, DIST, version), build_tarball(BUNDLE, DIST, version)]
    if sys.platform == "win32":
        iscc = shutil.which("iscc") or r"C:\Program Files (x86)\Inno Setup 6\ISCC.exe"
        script = ROOT / "installers" / "windows" / "byenatos.iss"
        subprocess.run(
            [iscc, f"/DAppVersion={version}", f"/DBundleDir={BUNDLE}", f"/O{DIST}", str(script)], check=True
        )
        return [DIST / f"ByenatOS-{version}-setup.exe"]
    if sys.platform == "darwin":
        subprocess.run(
            ["bash", str(ROOT / "installers" / "macos" / "make_dmg.sh"), version], check=True, cwd=ROOT
        )
        return [DIST / f"ByenatOS-{version}.dmg"]
    raise SystemExit(f"installers: no installer for {sys.platform} ({platform.machine()})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m installers", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["build"])
    ap.add_argument("--skip-bundle", action="store_true", help="package the existing dist/byenatos/")
    ap.add_argument("--no-installer", action="store_true", help="only the bundle")
    ap.add_argument(
        "--allow-drift", action="store_true", help="bundle packages at versions other than uv.lock's"
    )
    args = ap.parse_args(argv)
    version = app_version()
    if not args.skip_bundle:
        unlocked = os.environ.get("BYENATOS_UNLOCKED", "0") not in ("", "0")
        check_locked(args.allow_drift or unlocked)
        build_bundle()
    if not (BUNDLE / "byenatos").exists() and not (BUNDLE / "byenatos.exe").exists():
        raise SystemExit(f"installers: no bundle in {BUNDLE}; build it first")
    outputs = [] if args.no_installer else build_installers(version)
    for out in [BUNDLE, *outputs]:
        print(f"built {out} ({_size_mb(out):.0f} MB)")
    return 0


def _size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20
