"""PDF, page by page, with pypdf (imported here: it costs start-up time nobody else pays)."""

from __future__ import annotations

import io
import logging

from app.kernel.documents.pieces import Extracted, Piece, Skip, why


def extract_pdf(data: bytes) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    # pypdf logs every repaired flaw of a sloppy PDF as a warning; the report says what matters.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
    except Exception as e:  # pypdf raises many kinds on a damaged file
        raise Skip(f"not a readable PDF ({why(e)})", "broken") from None
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")  # owner-password-only PDFs open with an empty password
        except DependencyError:
            raise Skip("encrypted PDF: reading it needs the cryptography package", "encrypted") from None
        except Exception as e:
            raise Skip(f"encrypted PDF that could not be opened ({why(e)})", "encrypted") from None
        if not opened:
            raise Skip("encrypted PDF: it needs a password", "encrypted")
    try:
        pages = reader.pages
        count = len(pages)
    except Exception as e:
        raise Skip(f"not a readable PDF ({why(e)})", "broken") from None
    pieces: list[Piece] = []
    failed: list[int] = []
    for number in range(1, count + 1):
        try:
            text = pages[number - 1].extract_text() or ""
        except Exception:
            failed.append(number)
            continue
        text = _clean(text)
        if text:
            pieces.append(Piece(text, number, number))
    notes = [f"{len(failed)} of {count} pages could not be read (first: page {failed[0]})"] if failed else []
    if not pieces:
        if failed:
            raise Skip(f"no page of this PDF could be read ({len(failed)} failed)", "broken")
        raise Skip("no text in this PDF (scanned pages? ByenatOS does not run OCR)", "no_text")
    return Extracted("page", pieces, pages=count, merge=False, notes=notes)


def _clean(text: str) -> str:
    # Extraction leaves NULs and form feeds; SQLite and the tokenizers want neither.
    text = text.replace("\x00", "").replace("\x0c", "\n")
    return "\n".join(line.rstrip() for line in text.splitlines()).strip()
