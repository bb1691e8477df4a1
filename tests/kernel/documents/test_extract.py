"""Extractors and chunking on real files: every kind, and every kind of bad file."""

from __future__ import annotations

import os
import resource

import pytest

from app.kernel.documents import chunking
from app.kernel.documents.extract import extract, kind_of, read_file
from app.kernel.documents.pieces import Skip
from tests.kernel.documents.files import (
    pdf_bytes,
    write_binary_txt,
    write_broken_docx,
    write_docx,
    write_encrypted_pdf,
    write_pdf,
    write_sparse,
)

MB = 2**20


def skip_of(kind: str, data: bytes) -> Skip:
    with pytest.raises(Skip) as info:
        extract(kind, data)
    return info.value


def test_pdf_page_by_page(tmp_path):
    path = write_pdf(tmp_path / "r.pdf", ["Quarterly report (draft)", "", "Revenue grew in the climbing gyms"])
    got = extract("pdf", path.read_bytes())
    assert got.unit == "page" and got.pages == 3 and not got.merge
    assert [(p.start, p.text) for p in got.pieces] == [
        (1, "Quarterly report (draft)"), (3, "Revenue grew in the climbing gyms")]  # the empty page gives nothing


def test_a_long_pdf_page_is_cut_but_keeps_its_page(tmp_path):
    sentences = " ".join(f"Sentence number {i} talks about the budget." for i in range(120))
    got = extract("pdf", pdf_bytes(["short", sentences[:2000], sentences[2000:4000]]))
    parts = list(chunking.chunks(got))
    assert len(parts) > 3
    assert all(len(c.text) <= chunking.MAX for c in parts)
    assert {c.start for c in parts} == {1, 2, 3} and all(c.start == c.end for c in parts)


def test_encrypted_pdf_is_skipped_unless_it_opens_without_a_password(tmp_path):
    locked = write_encrypted_pdf(tmp_path / "locked.pdf", ["the secret plan"])
    s = skip_of("pdf", locked.read_bytes())
    assert s.code == "encrypted" and "password" in s.reason
    # Owner-password-only PDFs (printing restricted) open with an empty user password.
    import io

    from pypdf import PdfReader, PdfWriter

    w = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(["readable anyway"]))))
    w.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    buf = io.BytesIO()
    w.write(buf)
    assert extract("pdf", buf.getvalue()).pieces[0].text == "readable anyway"


def test_broken_and_textless_pdfs(tmp_path):
    assert skip_of("pdf", b"%PDF-1.4\n" + os.urandom(3000)).code == "broken"
    assert skip_of("pdf", b"").code == "broken"
    s = skip_of("pdf", pdf_bytes(["", ""]))
    assert s.code == "no_text" and "OCR" in s.reason


def test_docx_paragraphs_and_pages(tmp_path):
    plain = write_docx(tmp_path / "a.docx", ["First idea.", "", "Second idea."], heading="Plans")
    got = extract("docx", plain.read_bytes())
    assert got.unit == "para"
    assert [(p.start, p.text, p.heading) for p in got.pieces] == [
        (1, "Plans", "Plans"), (2, "First idea.", "Plans"), (3, "Second idea.", "Plans")]
    paged = write_docx(tmp_path / "b.docx", ["On page one.", "On page two."], page_break_after=0)
    got = extract("docx", paged.read_bytes())
    assert got.unit == "page" and [(p.start, p.text) for p in got.pieces] == [(1, "On page one."), (2, "On page two.")]


def test_docx_tables_are_read(tmp_path):
    import docx

    d = docx.Document()
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Name", "Role"
    table.cell(1, 0).text, table.cell(1, 1).text = "Ana", "Climber"
    d.save(str(tmp_path / "t.docx"))
    got = extract("docx", (tmp_path / "t.docx").read_bytes())
    assert [p.text for p in got.pieces] == ["Name | Role", "Ana | Climber"]


def test_broken_docx(tmp_path):
    s = skip_of("docx", write_broken_docx(tmp_path / "b.docx").read_bytes())
    assert s.code == "broken" and "zip" in s.reason
    s = skip_of("docx", b"PK\x03\x04 not really")
    assert s.code == "broken"


def test_markdown_blocks_lines_and_headings():
    text = "# Trip\n\nPack the rope.\nCheck the harness.\n\n## Food\n\n```\n# not a heading\n```\n"
    got = extract("markdown", text.encode())
    assert [(p.start, p.end, p.heading) for p in got.pieces] == [
        (1, 1, "Trip"), (3, 4, "Trip"), (6, 6, "Food"), (8, 10, "Food")]
    parts = list(chunking.chunks(got))
    # A heading starts a passage: "Trip" and "Food" are never in one.
    assert [(c.start, c.end, c.heading) for c in parts] == [(1, 4, "Trip"), (6, 10, "Food")]
    assert chunking.anchor("line", 6, 10) == "#L6-L10" and chunking.place("line", 6, 10) == "lines 6-10"


def test_code_by_line_ranges():
    source = "\n\n".join(f"def f{i}():\n    return {i}\n" for i in range(200))
    parts = list(chunking.chunks(extract("code", source.encode())))
    assert len(parts) > 5
    lines = source.splitlines()
    for c in parts:  # each passage is exactly its line range
        body = [ln for ln in lines[c.start - 1 : c.end] if ln.strip()]
        assert c.text.split("\n") == body


def test_a_huge_line_is_cut_by_characters():
    parts = list(chunking.chunks(extract("code", b"var a=1;" * 5000)))
    assert len(parts) == 40 and all(c.start == c.end == 1 for c in parts)


def test_text_decoding():
    assert extract("text", "caf\u00e9 na\u00efve".encode()).pieces[0].text == "café naïve"
    assert extract("text", "r\u00e9sum\u00e9".encode("cp1252")).pieces[0].text == "résumé"  # legacy Windows text
    assert extract("text", "\ufeffBOM".encode("utf-8")).pieces[0].text == "BOM"
    assert extract("text", "wide".encode("utf-16")).pieces[0].text == "wide"


def test_binary_named_txt(tmp_path):
    s = skip_of("text", write_binary_txt(tmp_path / "x.txt").read_bytes())
    assert s.code == "binary" and "NUL" in s.reason
    no_nul = bytes(b for b in os.urandom(20000) if b)
    assert skip_of("text", no_nul).code == "binary"  # not UTF-8, full of control bytes


def test_a_2gb_file_is_never_read(tmp_path):
    big = write_sparse(tmp_path / "huge.txt")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(Skip) as info:
        read_file(big, 64 * MB)
    assert info.value.code == "too_large" and "2.0 GB" in info.value.reason
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KB: nothing was read


def test_pipes_and_missing_files(tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(Skip) as info:
        read_file(fifo, MB)  # would block forever if opened for reading
    assert info.value.code == "not_a_file"
    with pytest.raises(Skip) as info:
        read_file(tmp_path / "gone.txt", MB)
    assert info.value.code == "vanished"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file whatever its permissions")
def test_unreadable_file(tmp_path):
    f = tmp_path / "secret.txt"
    f.write_text("x")
    f.chmod(0)
    with pytest.raises(Skip) as info:
        read_file(f, MB)
    assert info.value.code == "unreadable" and "ermission" in info.value.reason


def test_kinds(tmp_path):
    from pathlib import Path

    assert kind_of(Path("a.PDF")) == "pdf" and kind_of(Path("b.docx")) == "docx"
    assert kind_of(Path("notes.md")) == "markdown" and kind_of(Path("main.py")) == "code"
    assert kind_of(Path("Makefile")) == "code" and kind_of(Path("x.txt")) == "text"
    assert kind_of(Path("photo.jpg")) is None and kind_of(Path(".hidden.md")) is None
    assert kind_of(Path("~$lock.docx")) is None
    s = skip_of("doc", b"\xd0\xcf\x11\xe0")
    assert s.code == "unsupported" and ".docx" in s.reason
