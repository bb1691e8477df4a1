"""Word (.docx) with python-docx: paragraphs and table rows in document order.

A .docx has no pages of its own (they exist when a program lays it out), but Word records
where its last layout broke pages (`w:lastRenderedPageBreak`), and authors put hard page
breaks: where either is present passages cite pages, else paragraph numbers.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

from app.kernel.documents.pieces import Extracted, Piece, Skip, why

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_BR, _TYPE = f"{{{_W}}}br", f"{{{_W}}}type"


def extract_docx(data: bytes) -> Extracted:
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise Skip("not a valid .docx: the zip inside is broken", "broken") from None
    except Exception as e:  # a zip without word/document.xml, bad XML…
        raise Skip(f"not a valid .docx ({why(e)})", "broken") from None
    try:
        blocks = list(_blocks(document))
    except Exception as e:
        raise Skip(f"could not read this .docx ({why(e)})", "broken") from None
    # Word turns each hard break into a rendered one when it lays the file out: count the
    # rendered ones where there are any (a file Word saved), else the hard ones.
    rendered = any(r for _, _, r, _ in blocks)
    paged = rendered or any(h for _, _, _, h in blocks)
    pieces: list[Piece] = []
    page, heading, number = 1, "", 0
    for text, style, soft, hard in blocks:
        page += soft if rendered else hard  # a break inside a paragraph: cite the page it ends on
        if not text:
            continue
        number += 1
        if style.startswith(("Heading", "Title")):
            heading = text[:120]
        where = page if paged else number
        pieces.append(Piece(text, where, where, heading))
    if not pieces:
        raise Skip("no text in this .docx", "no_text")
    return Extracted("page" if paged else "para", pieces, pages=page if paged else 0)


def _blocks(document: Any) -> Any:
    """(text, style name, rendered page breaks, hard page breaks) for each paragraph and
    table row, in order."""
    from docx.table import Table

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells = []
                for cell in row.cells:
                    value = " ".join(cell.text.split())
                    if value and (not cells or cells[-1] != value):  # merged cells repeat
                        cells.append(value)
                yield " | ".join(cells), "", 0, 0
            continue
        # python-docx has no public view of hard breaks: they are read from the paragraph's XML.
        hard = sum(1 for el in block._p.iter(_BR) if el.get(_TYPE) == "page")
        style = block.style.name if block.style is not None else ""
        yield block.text.strip(), style or "", len(block.rendered_page_breaks), hard
