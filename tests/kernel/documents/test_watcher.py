"""The watcher keeps the index in step: new, changed, deleted files and folders moved in, each
awaited through the index's DocumentsIndexed events."""

from __future__ import annotations

import shutil

from app.kernel.documents.events import DocumentsIndexed
from tests.kernel.documents.files import write_docx, write_pdf


def watched(e) -> bool:
    return isinstance(e, DocumentsIndexed) and e.trigger == "watch"


async def until(w, test, limit: int = 20) -> DocumentsIndexed:
    """The first watch batch for which `test` holds (a save can arrive as two batches)."""
    for _ in range(limit):
        event = await w.next()
        if test(event):
            return event
    raise AssertionError("no such batch")


async def test_watcher_follows_changes(docs, tmp_path, waiter):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "old.md").write_text("The garden needs water.")
    scans = waiter(lambda e: isinstance(e, DocumentsIndexed) and e.trigger == "scan")
    await docs.add_folder(root)
    docs.begin()  # what the kernel does at start when folders are configured
    assert (await scans.next()).indexed == 1
    assert docs.watching

    changes = waiter(watched)
    new = write_pdf(root / "new.pdf", ["Cover", "The boiler is serviced every October."])
    event = await until(changes, lambda e: str(new) in e.paths)
    assert event.indexed >= 1 and event.pages >= 2
    (hit,) = await docs.search("boiler serviced", k=1)
    assert hit["file"] == str(new) and hit["page"] == 2

    (root / "old.md").write_text("The garden needs water and the roses need pruning.")
    await until(changes, lambda e: str(root / "old.md") in e.paths and e.indexed)
    assert (await docs.search("roses pruning", k=1))[0]["file"] == str(root / "old.md")

    new.unlink()
    event = await until(changes, lambda e: e.removed)
    assert str(new) in event.paths
    assert all(h["file"] != str(new) for h in await docs.search("boiler serviced", k=5))

    # A folder moved in (one event for the folder, none for its files): its files are indexed.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_docx(outside / "plan.docx", ["Repaint the kitchen in spring."])
    shutil.move(str(outside), str(root / "moved"))
    await until(changes, lambda e: str(root / "moved" / "plan.docx") in e.paths)
    assert (await docs.search("repaint kitchen", k=1))[0]["file"] == str(root / "moved" / "plan.docx")

    # …and moved out again: forgotten.
    shutil.move(str(root / "moved"), str(tmp_path / "away"))
    await until(changes, lambda e: str(root / "moved" / "plan.docx") in e.paths and e.removed)

    # Files the index ignores (hidden, tool folders) cause no passages.
    (root / ".cache").mkdir()
    (root / ".cache" / "x.md").write_text("ignored")
    (root / "last.md").write_text("the last note")
    event = await until(changes, lambda e: str(root / "last.md") in e.paths)
    assert not any(".cache" in p for p in event.paths)


async def test_removing_a_folder_stops_watching_it(docs, tmp_path, waiter):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    docs.begin()
    await docs.add_folder(a, wait=True)
    await docs.add_folder(b, wait=True)
    assert docs.watching
    await docs.remove_folder(a)
    changes = waiter(watched)
    (a / "x.md").write_text("not indexed any more")
    (b / "y.md").write_text("still watched")
    event = await until(changes, lambda e: str(b / "y.md") in e.paths)
    assert not any(p.startswith(str(a)) for p in event.paths)
    await docs.remove_folder(b)
    assert not docs.watching


async def test_the_kernel_begins_and_stops_the_index(home, tmp_path):
    from app.kernel import kernel as kernel_module
    from app.kernel.kernel import Kernel

    k = await Kernel().start()
    try:
        assert k._documents_later is None  # no folders: nothing scheduled, nothing imported
    finally:
        await k.stop()
    root = tmp_path / "d"
    root.mkdir()
    (root / "a.md").write_text("the first note")
    from app.kernel.config import Paths
    from app.kernel.documents.folders import FolderRegistry

    FolderRegistry(Paths.default()).add(root)
    delay, kernel_module.DOCUMENTS_DELAY_S = kernel_module.DOCUMENTS_DELAY_S, 0.0
    try:
        k = await Kernel().start()
        scans = k.events.subscribe(accepts=lambda e: isinstance(e, DocumentsIndexed) and e.trigger == "scan")
        try:
            event = await scans.queue.get()  # the catch-up scan, begun by the kernel
            assert event.folder == str(root) and event.indexed == 1
            assert k.documents.watching
            watcher = k.documents._watcher
        finally:
            await k.stop()
        assert not watcher.running and k._documents is not None and not k.documents.watching
    finally:
        kernel_module.DOCUMENTS_DELAY_S = delay
