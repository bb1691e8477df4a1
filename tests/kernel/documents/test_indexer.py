"""The index on a real kernel: folders of real files in, passages in the encrypted personal
store, incremental rescans, skips with reasons, search that cites file and page."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.kernel.documents.indexer import record_ids
from app.kernel.errors import BadRequestError, NotFoundError
from app.kernel.personal.service import Caller
from tests.kernel.documents.files import (
    write_binary_txt,
    write_broken_docx,
    write_docx,
    write_encrypted_pdf,
    write_pdf,
    write_sparse,
)


def library(root: Path) -> Path:
    root.mkdir()
    write_pdf(root / "report.pdf", ["Annual report", "The piano lesson moved to Thursday afternoons", "Appendix"])
    write_docx(root / "letter.docx", ["Dear Ana,", "the climbing gym opens at seven."], heading="Letter")
    (root / "notes").mkdir()
    (root / "notes" / "trip.md").write_text("# Trip\n\nPack the rope.\n\n## Food\n\nBring dried mango.\n")
    (root / "src").mkdir()
    (root / "src" / "main.py").write_text("\n".join(f"x{i} = {i}" for i in range(30)) + "\n\ndef kayak_rental():\n    pass\n")
    (root / "todo.txt").write_text("buy a new kettle\n")
    write_encrypted_pdf(root / "locked.pdf", ["tax return"])
    write_broken_docx(root / "broken.docx")
    write_binary_txt(root / "binary.txt")
    write_sparse(root / "huge.txt")
    (root / "photo.jpg").write_bytes(b"\xff\xd8 not a document")
    (root / ".hidden.md").write_text("hidden")
    (root / "node_modules").mkdir()
    (root / "node_modules" / "lib.js").write_text("vendored")
    return root


async def test_first_index_counts_skips_and_search_cites_pages(docs, tmp_path, waiter):
    root = library(tmp_path / "docs")
    progress = waiter(lambda e: e.name == "DocumentsProgress")
    result = await docs.add_folder(root, wait=True)
    report = result["report"]
    assert result["status"] == "added"
    assert (report["indexed"], report["skipped"], report["files_total"]) == (5, 4, 9)
    first = await progress.next()
    assert first.files_total == 9 and first.folder == str(root)

    status = await docs.status()
    assert status["state"] == "idle" and status["files"] == 5 and status["skipped_total"] == 4
    reasons = {Path(s["path"]).name: (s["code"], s["reason"]) for s in status["skipped"]}
    assert reasons["locked.pdf"][0] == "encrypted" and "password" in reasons["locked.pdf"][1]
    assert reasons["broken.docx"][0] == "broken"
    assert reasons["binary.txt"][0] == "binary"
    assert reasons["huge.txt"][0] == "too_large" and "2.0 GB" in reasons["huge.txt"][1]
    assert not any("hidden" in p or "node_modules" in p or p.endswith(".jpg") for p in (s["path"] for s in status["skipped"]))

    hits = await docs.search("when is the piano lesson", k=3)
    assert hits[0]["file"] == str(root / "report.pdf") and hits[0]["page"] == 2
    assert hits[0]["address"] == (root / "report.pdf").as_uri() + "#page=2"
    assert hits[0]["citation"] == "report.pdf · page 2" and "Thursday" in hits[0]["text"]
    hits = await docs.search("kayak rental", k=3)
    top = hits[0]
    assert top["file"].endswith("main.py") and top["lines"] is not None
    assert top["address"].endswith(f"#L{top['lines'][0]}-L{top['lines'][1]}") and top["lines"][1] == 33
    hits = await docs.search("climbing gym", k=3)
    assert hits[0]["file"].endswith("letter.docx") and hits[0]["paragraphs"] is not None


async def test_passages_are_hinata_records_the_psp_cites(docs, kernel, tmp_path):
    root = library(tmp_path / "docs")
    await docs.add_folder(root, wait=True)
    rid = record_ids(str(root / "report.pdf"), 1, 2)[0]
    rec = await kernel.personal.get(rid, Caller.user())
    assert rec["source"] == "documents" and rec["access"] == "private" and "document" in rec["tag"]
    assert rec["address"].endswith("report.pdf#page=2")
    psp = await kernel.personal.build_psp(Caller.user(), "piano lesson")
    assert "report.pdf · page 2" in psp.text  # the PSP line names the file and page
    # Private to the user: another app's PSP does not see the user's documents.
    other = await kernel.personal.build_psp(Caller("chat-app", frozenset({"hinata:read"})), "piano lesson")
    assert "report.pdf" not in other.text


async def test_shared_folder_is_seen_by_apps_with_hinata_read(docs, kernel, tmp_path):
    root = tmp_path / "shared"
    root.mkdir()
    (root / "a.md").write_text("The sailing course starts in May.")
    await docs.add_folder(root, "shared", wait=True)
    app = Caller("chat-app", frozenset({"hinata:read"}))
    found = await kernel.personal.recall(app, "sailing course", k=3)
    assert found and found[0]["address"].startswith(root.as_uri())
    # Making it private again re-stores every passage with the new access.
    again = await docs.add_folder(root, "private", wait=True)
    assert again["status"] == "updated" and again["report"]["indexed"] == 1
    assert await kernel.personal.recall(app, "sailing course", k=3) == []


async def test_rescans_are_incremental(docs, kernel, tmp_path):
    root = library(tmp_path / "docs")
    await docs.add_folder(root, wait=True)
    (report,) = await docs.scan(root)
    assert (report["indexed"], report["unchanged"], report["skipped"], report["removed"]) == (0, 9, 0, 0)

    todo = root / "todo.txt"
    stat = todo.stat()
    os.utime(todo, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # touched, same content
    (report,) = await docs.scan(root)
    assert report["indexed"] == 0 and report["unchanged"] == 9

    todo.write_text("buy a new kettle\nand descale the old one\n")
    (report,) = await docs.scan(root)
    assert report["indexed"] == 1
    assert (await docs.search("descale", k=2))[0]["file"] == str(todo)

    # A file that shrinks forgets the passages past its new end.
    md = root / "notes" / "long.md"
    md.write_text("\n\n".join(f"## Part {i}\n\nparagraph {i} about owls" for i in range(6)))
    await docs.scan(root)
    ids = record_ids(str(md), 0, 6)
    assert all([await kernel.personal.get(i, Caller.user()) for i in ids])
    md.write_text("## Part 0\n\nonly owls now")
    (report,) = await docs.scan(root)
    assert report["indexed"] == 1
    await kernel.personal.get(ids[0], Caller.user())
    for rid in ids[1:]:
        with pytest.raises(NotFoundError):
            await kernel.personal.get(rid, Caller.user())

    # Deleted files are forgotten, with their passages.
    (root / "report.pdf").unlink()
    (report,) = await docs.scan(root)
    assert report["removed"] == 1
    with pytest.raises(NotFoundError):
        await kernel.personal.get(record_ids(str(root / "report.pdf"), 1, 2)[0], Caller.user())
    assert all(h["file"] != str(root / "report.pdf") for h in await docs.search("piano lesson Thursday", k=10))

    # A file that became bad loses its old passages and says why.
    write_binary_txt(todo)
    (report,) = await docs.scan(root)
    assert report["skipped"] == 1
    assert not [h for h in await docs.search("kettle", k=10) if h["file"] == str(todo)]


async def test_a_missing_folder_removes_nothing(docs, tmp_path):
    root = tmp_path / "usb"
    root.mkdir()
    (root / "a.md").write_text("backup of the wedding speech")
    await docs.add_folder(root, wait=True)
    root.rename(tmp_path / "unplugged")
    (report,) = await docs.scan(root)
    assert "missing" in report["problem"] and report["removed"] == 0
    (folder,) = docs.folders()
    assert folder["files"] == 1 and "missing" in folder["problem"]
    assert (await docs.search("wedding speech", k=1))[0]["file"] == str(root / "a.md")


async def test_remove_folder_forgets_its_passages(docs, kernel, tmp_path):
    root = library(tmp_path / "docs")
    await docs.add_folder(root, wait=True)
    out = await docs.remove_folder(root)
    assert out["status"] == "removed" and out["forgotten_files"] == 9
    assert await docs.search("piano lesson", k=5) == []
    assert docs.folders() == []
    status = await docs.status()
    assert status["files"] == 0 and status["skipped_total"] == 0
    with pytest.raises(NotFoundError):
        await docs.remove_folder(root)


async def test_folder_rules(docs, tmp_path):
    root = tmp_path / "a"
    (root / "b").mkdir(parents=True)
    with pytest.raises(BadRequestError, match="no such folder"):
        await docs.add_folder(tmp_path / "nope")
    with pytest.raises(BadRequestError, match="absolute path"):
        await docs.add_folder("docs")
    with pytest.raises(BadRequestError, match="whole disk"):
        await docs.add_folder("/")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(BadRequestError, match="not a folder"):
        await docs.add_folder(tmp_path / "file.txt")
    await docs.add_folder(root, wait=True)
    with pytest.raises(BadRequestError, match="inside"):
        await docs.add_folder(root / "b")
    with pytest.raises(BadRequestError, match="holds"):
        await docs.add_folder(tmp_path)
    assert (await docs.add_folder(root))["status"] == "unchanged"
    with pytest.raises(BadRequestError):
        await docs.search("   ")
    with pytest.raises(BadRequestError):
        await docs.search("x", k=0)


async def test_folders_persist_across_restarts(kernel, home, tmp_path):
    from app.kernel.kernel import Kernel

    root = tmp_path / "d"
    root.mkdir()
    (root / "a.md").write_text("the lighthouse keeper")
    await kernel.personal.ready()
    await kernel.documents.add_folder(root, wait=True)
    await kernel.stop()
    again = await Kernel().start()
    try:
        assert [f["path"] for f in again.documents.folders()] == [str(root)]
        await again.personal.ready()
        (report,) = await again.documents.scan()
        assert report["unchanged"] == 1  # the manifest survived: nothing read again
    finally:
        await again.stop()
        await kernel.start()  # the fixture stops it again


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file whatever its permissions")
async def test_unreadable_files_and_folders(docs, tmp_path):
    root = tmp_path / "p"
    (root / "closed").mkdir(parents=True)
    (root / "closed" / "x.md").write_text("x")
    (root / "secret.md").write_text("x")
    (root / "secret.md").chmod(0)
    await docs.add_folder(root, wait=True)
    (root / "closed").chmod(0)
    try:
        await docs.scan(root)
        codes = {Path(s["path"]).name: s["code"] for s in (await docs.status())["skipped"]}
        assert codes == {"secret.md": "unreadable", "closed": "unreadable"}
        assert docs.folders()[0]["files"] == 1  # closed/x.md is kept: its folder is only unreadable
    finally:
        (root / "closed").chmod(0o755)
