"""Which files are documents, reading one safely, and turning it into located text.

`read_file` opens a file only if it is a regular file under the size cap (a 2 GB file or a
named pipe is never read), and `extract` hands its bytes to the extractor of its kind. A file
that cannot be indexed raises `Skip` with the reason in words; nothing else escapes, so one bad
file never stops an index of thousands.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from app.kernel.documents.pieces import Extracted, Skip

KINDS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".doc": "doc",  # the old binary Word format: reported, not read
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".org": "text",
    ".tex": "text",
}
CODE_SUFFIXES = frozenset(
    ".py .pyi .js .mjs .cjs .ts .tsx .jsx .java .kt .kts .scala .go .rs .c .h .cc .cpp .cxx .hpp .hh .m .mm "
    ".cs .fs .swift .rb .php .pl .lua .r .jl .hs .ex .exs .erl .clj .dart .sh .bash .zsh .fish .ps1 .sql "
    ".html .htm .css .scss .less .vue .svelte .json .yaml .yml .toml .ini .cfg .xml .proto .gradle .cmake "
    ".el .vim .zig .nim".split()
)
CODE_NAMES = frozenset({"Makefile", "Dockerfile", "CMakeLists.txt", "Justfile"})
# Folders that hold tools' state or other people's code, not the user's documents.
SKIP_DIRS = frozenset(
    {"node_modules", "__pycache__", ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".mypy_cache",
     ".pytest_cache", ".ruff_cache", ".trash", ".Trash", "$RECYCLE.BIN", ".obsidian", "site-packages"}
)


def kind_of(path: Path) -> str | None:
    """The extractor for this file, or None: not a document (ignored, not reported)."""
    name = path.name
    if name.startswith(".") or name.startswith("~$"):  # hidden files, Word's lock files
        return None
    if name in CODE_NAMES:
        return "code"
    suffix = path.suffix.lower()
    if suffix in KINDS:
        return KINDS[suffix]
    if suffix in CODE_SUFFIXES:
        return "code"
    return None


def skipped_dir(name: str) -> bool:
    return name.startswith(".") or name in SKIP_DIRS


def read_file(path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """The whole file, if it is a regular file of at most `max_bytes`; else `Skip`."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise Skip("the file disappeared before it could be read", "vanished") from None
    except OSError as e:
        raise Skip(f"cannot read it: {e.strerror or e}", "unreadable") from None
    if not stat.S_ISREG(st.st_mode):
        raise Skip("not a regular file (a pipe, socket or device)", "not_a_file")
    if st.st_size > max_bytes:
        raise Skip(f"{_size(st.st_size)} is over the size limit of {_size(max_bytes)}", "too_large")
    try:
        # O_NONBLOCK: should the path have become a pipe since the stat, open does not hang.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise Skip("the file disappeared before it could be read", "vanished") from None
    except OSError as e:
        raise Skip(f"cannot read it: {e.strerror or e}", "unreadable") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise Skip("not a regular file (a pipe, socket or device)", "not_a_file")
        try:
            data = fh.read(max_bytes + 1)  # never more than the cap, even if it grew meanwhile
        except OSError as e:
            raise Skip(f"cannot read it: {e.strerror or e}", "unreadable") from None
    if len(data) > max_bytes:
        raise Skip(f"it grew over the size limit of {_size(max_bytes)} while being read", "too_large")
    return data, st


def extract(kind: str, data: bytes) -> Extracted:
    if kind == "pdf":
        from app.kernel.documents.pdf import extract_pdf

        return extract_pdf(data)
    if kind == "docx":
        from app.kernel.documents.word import extract_docx

        return extract_docx(data)
    if kind == "doc":
        raise Skip("an old Word .doc file: ByenatOS reads .docx (save it as .docx to index it)", "unsupported")
    from app.kernel.documents.text import extract_lines

    return extract_lines(data, markdown=kind == "markdown")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
