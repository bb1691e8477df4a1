"""Real document files for tests and bench.documents_index: PDFs written by hand (a valid
PDF 1.4 with one Helvetica text object a page, which pypdf reads back), encrypted ones with
pypdf, .docx with python-docx, and the bad files the index must survive."""

from __future__ import annotations

import zipfile
from pathlib import Path


def _pdf_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_bytes(pages: list[str]) -> bytes:
    """A PDF whose page i shows pages[i] (one line per line of text)."""
    objects: list[bytes] = []
    n = len(pages)
    # 1 catalog, 2 pages, 3 font, then per page: page object, content stream
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, text in enumerate(pages):
        lines = text.split("\n")
        ops = ["BT", "/F1 11 Tf", "14 TL", "50 800 Td"]
        for line in lines:
            ops.append(f"({_pdf_string(line)}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("cp1252", errors="replace")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def write_pdf(path: Path, pages: list[str]) -> Path:
    path.write_bytes(pdf_bytes(pages))
    return path


def write_encrypted_pdf(path: Path, pages: list[str], password: str = "secret") -> Path:
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(pages))))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-128")
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


def write_docx(path: Path, paragraphs: list[str], *, heading: str | None = None, page_break_after: int | None = None) -> Path:
    import docx

    document = docx.Document()
    if heading:
        document.add_heading(heading, level=1)
    for i, text in enumerate(paragraphs):
        document.add_paragraph(text)
        if page_break_after is not None and i == page_break_after:
            document.add_page_break()
    document.save(str(path))
    return path


def write_broken_docx(path: Path) -> Path:
    """A zip cut off half way: what a crashed download or a full disk leaves."""
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("word/document.xml", "<w:document>" + "x" * 5000 + "</w:document>")
    data = buf.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_binary_txt(path: Path) -> Path:
    path.write_bytes(bytes(range(256)) * 64)
    return path


def write_sparse(path: Path, size: int = 2 * 2**30) -> Path:
    """A file of `size` bytes that takes no disk space (truncate), for the size cap."""
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


def make_tree(root: Path, n: int) -> Path:
    """`n` small files of every kind under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"note-{i}.md").write_text(f"# Note {i}\n\nThe number {i} is written here.\n")
    return root
