"""Markdown folders (Obsidian-style) and front matter; re-import reads only what changed."""

from __future__ import annotations

import os

from app.kernel.personal.importers import parse_front_matter
from app.kernel.personal.service import Caller

USER = Caller.user()

NOTE = """---
title: Garden plan
tags: [garden, spring]
date: 2024-04-02
access: shared
---
# Ignored heading
Plant tomatoes after the last frost. #vegetables
"""


def test_front_matter_forms():
    meta, body = parse_front_matter(NOTE)
    assert (
        meta["title"] == "Garden plan"
        and meta["tags"] == ["garden", "spring"]
        and body.startswith("# Ignored")
    )
    meta, _ = parse_front_matter("---\ntags:\n  - a\n  - 'b c'\ntitle: \"Q\"\n---\nx")
    assert meta == {"tags": ["a", "b c"], "title": "Q"}
    assert parse_front_matter("no front matter") == ({}, "no front matter")
    assert parse_front_matter("---\nunterminated")[0] == {}


async def test_a_folder_imports_once_and_then_only_changes(personal, tmp_path):
    vault = tmp_path / "vault"
    (vault / "sub").mkdir(parents=True)
    (vault / ".obsidian").mkdir()
    (vault / ".obsidian" / "workspace.md").write_text("# not a note")
    (vault / "garden.md").write_text(NOTE)
    (vault / "sub" / "reading-list.md").write_text("Books to read: Dune, Piranesi #books")
    (vault / "image.png").write_bytes(b"\x89PNG")

    first = await personal.import_markdown(vault, USER)
    assert (first.created, first.updated, first.skipped, first.errors) == (2, 0, 0, [])
    rows = {r["highlight"]: r for r in (await personal.search(USER))["data"]}
    garden = rows["Garden plan"]
    assert garden["tag"] == ["garden", "spring", "vegetables"]
    assert garden["access"] == "shared" and garden["timestamp"].startswith("2024-04-02")
    assert garden["address"] == str(vault / "garden.md") and garden["metadata"]["path"] == "garden.md"
    assert "reading list" in rows  # title from the file name when there is no heading
    assert rows["reading list"]["tag"] == ["books"]

    again = await personal.import_markdown(vault, USER)
    assert (again.created, again.updated, again.skipped) == (0, 0, 2)

    (vault / "garden.md").write_text(NOTE.replace("tomatoes", "peppers"))
    touched = vault / "sub" / "reading-list.md"
    os.utime(touched, (touched.stat().st_atime, touched.stat().st_mtime + 5))  # touched, same content
    (vault / "new.md").write_text("# New idea\nA note about kites")
    third = await personal.import_markdown(vault, USER)
    assert (third.created, third.updated, third.unchanged, third.skipped) == (1, 1, 1, 0)
    assert (await personal.search(USER, text="peppers"))["total"] == 1
    assert (await personal.search(USER, text="tomatoes"))["total"] == 0

    (vault / "new.md").unlink()
    fourth = await personal.import_markdown(vault, USER)
    assert fourth.removed == 1
    assert (await personal.search(USER, text="kites"))["total"] == 0


async def test_importing_a_missing_folder_is_a_clear_error(personal, tmp_path):
    import pytest

    from app.kernel.errors import BadRequestError

    with pytest.raises(BadRequestError, match="not a folder"):
        await personal.import_markdown(tmp_path / "nope", USER)
