"""uv.lock, read without uv: what it pins here, and how an installed environment differs from it.

uv.lock (made by `scripts/lock.sh`, see docs/dev/dependencies.md) pins every package for every
platform and Python the project supports; a package may have several entries, each for the
environments its `resolution-markers` name (numpy for Python 3.11 and for 3.12+, say).

    python -m installers.lockfile drift          # installed packages that differ from the lock
    python -m installers.lockfile pins pip uv    # pinned, hashed requirement lines (set-up's first step)
    python -m installers.lockfile extraneous REQ # installed packages set-up removes (see extraneous())

Standard library only (packaging is used where installed), so set-up can run it in a bare venv.
The test suite prints the drift in its header (tests/conftest.py) and the installer build checks it.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "uv.lock"


def canonical(name: str) -> str:
    """PEP 503 normalised name: "PySide6_Essentials" and "pyside6-essentials" are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, slots=True)
class Pinned:
    name: str  # canonical
    version: str
    markers: tuple[str, ...]  # the environments this entry is for; () = all
    hashes: tuple[str, ...]  # "sha256:…" of every file (wheels and sdist) the lock lists


@dataclass(frozen=True, slots=True)
class Drift:
    name: str
    installed: str
    locked: str | None  # None: the lock does not list the package at all

    def __str__(self) -> str:
        return (
            f"{self.name} {self.installed} ({f'locked {self.locked}' if self.locked else 'not in uv.lock'})"
        )


def read_lock(text: str) -> list[Pinned]:
    """Every registry package the lock pins (the project itself and other local sources left out)."""
    data = tomllib.loads(text)
    pinned = []
    for package in data.get("package", []):
        source = package.get("source", {})
        if "registry" not in source:
            continue  # the project (editable), or a path/git source: nothing to compare a version to
        files = [package["sdist"]] if "sdist" in package else []
        files += package.get("wheels", [])
        pinned.append(
            Pinned(
                name=canonical(package["name"]),
                version=package["version"],
                markers=tuple(package.get("resolution-markers", ())),
                hashes=tuple(f["hash"] for f in files if "hash" in f),
            )
        )
    return pinned


def _applies(markers: tuple[str, ...], environment: Mapping[str, str] | None) -> bool | None:
    """Whether an entry is for this environment; None when that cannot be told (no packaging)."""
    if not markers:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:
        return None
    return any(Marker(m).evaluate(dict(environment) if environment else None) for m in markers)


def locked_versions(
    pins: Iterable[Pinned], environment: Mapping[str, str] | None = None
) -> dict[str, set[str]]:
    """Name → the version(s) the lock pins for this environment (the running one by default).

    One version per name where the markers can be evaluated; where they cannot, every version
    the lock lists for the name (an installed version among them is then taken as locked).
    """
    found: dict[str, set[str]] = {}
    undecided: dict[str, set[str]] = {}
    for pin in pins:
        applies = _applies(pin.markers, environment)
        if applies:
            found.setdefault(pin.name, set()).add(pin.version)
        elif applies is None:
            undecided.setdefault(pin.name, set()).add(pin.version)
    for name, versions in undecided.items():
        found.setdefault(name, set()).update(versions)
    return found


def installed_versions() -> dict[str, str]:
    """Name → version of every distribution in this environment."""
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(canonical(name), dist.version)
    return out


def compare(
    installed: Mapping[str, str], locked: Mapping[str, set[str]], *, ignore: Iterable[str] = ("byenatos",)
) -> list[Drift]:
    """Installed packages whose version is not the locked one, or that the lock does not list."""
    skip = {canonical(n) for n in ignore}
    drifts = []
    for name, version in sorted(installed.items()):
        if name in skip:
            continue
        want = locked.get(name)
        if want is None:
            drifts.append(Drift(name, version, None))
        elif version not in want:
            drifts.append(Drift(name, version, " or ".join(sorted(want))))
    return drifts


def lock_text(root: Path = ROOT) -> tuple[str | None, str]:
    """uv.lock's text and where it came from: the working tree, else the last commit (`git show`).

    The second keeps the comparison working in a drift run that deleted the lock to install the
    newest versions.
    """
    path = root / "uv.lock"
    if path.is_file():
        return path.read_text(encoding="utf-8"), "uv.lock"
    try:
        run = subprocess.run(
            ["git", "show", "HEAD:uv.lock"], cwd=root, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None, "no uv.lock"
    if run.returncode != 0:
        return None, "no uv.lock (and none in git)"
    return run.stdout, "uv.lock of HEAD (deleted from the working tree)"


def drift(root: Path = ROOT) -> tuple[list[Drift] | None, str]:
    """How this environment differs from the lock (None when there is no lock to compare with)."""
    text, source = lock_text(root)
    if text is None:
        return None, source
    return compare(installed_versions(), locked_versions(read_lock(text))), source


def report_lines(drifts: list[Drift] | None, source: str) -> list[str]:
    if drifts is None:
        return [f"packages: {source} to compare with"]
    if not drifts:
        return [f"packages: as pinned in {source}"]
    moved = [d for d in drifts if d.locked]
    new = [d for d in drifts if not d.locked]
    lines = [f"packages: {len(moved)} differ from {source}, {len(new)} not in it (installed, locked):"]
    lines += [f"  {d}" for d in moved + new]
    return lines


def pins(names: Iterable[str], text: str) -> str:
    """Hashed requirement lines for these packages, as pip's --require-hashes mode reads them."""
    by_name: dict[str, list[Pinned]] = {}
    for pin in read_lock(text):
        by_name.setdefault(pin.name, []).append(pin)
    lines = []
    for name in names:
        entries = by_name.get(canonical(name))
        if not entries:
            raise SystemExit(f"uv.lock pins no {name}")
        for pin in entries:
            marker = f" ; {' or '.join(f'({m})' for m in pin.markers)}" if pin.markers else ""
            hashes = "".join(f" --hash={h}" for h in pin.hashes)
            lines.append(f"{pin.name}=={pin.version}{marker}{hashes}")
    return "\n".join(lines) + "\n"


_REQ_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==")


def listed_names(requirements: str) -> set[str]:
    """The packages a requirements file (uv export's output) pins."""
    return {canonical(m.group(1)) for line in requirements.splitlines() if (m := _REQ_LINE.match(line))}


def extraneous(requirements: str, lock: str, *, keep: Iterable[str] = ("byenatos",)) -> list[str]:
    """Installed packages that set-up removes: not in these requirements, nor as the lock pins them.

    A package of other extras stays while it is at its locked version (./run.sh after ./test.sh
    does not uninstall the dev tools); one the lock does not list, or at another version (left by
    an unlocked run or an older lock), goes.
    """
    wanted = listed_names(requirements) | {canonical(n) for n in keep}
    locked = locked_versions(read_lock(lock))
    return sorted(
        name
        for name, version in installed_versions().items()
        if name not in wanted and version not in locked.get(name, ())
    )


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else "drift"
    if command == "drift":
        found, source = drift()
        print("\n".join(report_lines(found, source)))
        return 0
    if command == "pins":
        text, source = lock_text()
        if text is None:
            raise SystemExit(source)
        sys.stdout.write(pins(args, text))
        return 0
    if command == "extraneous" and len(args) == 1:
        text, source = lock_text()
        if text is None:
            raise SystemExit(source)
        for name in extraneous(Path(args[0]).read_text(encoding="utf-8"), text):
            print(name)
        return 0
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
