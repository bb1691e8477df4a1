"""`byenatos docs …` as a user runs it: real processes, real files, one home; alone and beside
a running `byenatos serve`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from tests.cli.test_cli import byenatos, one_readable_line
from tests.kernel.documents.files import write_encrypted_pdf, write_pdf, write_sparse


def folder(tmp_path):
    root = tmp_path / "papers"
    root.mkdir()
    write_pdf(root / "lease.pdf", ["Tenancy agreement", "The rent is due on the first of each month."])
    (root / "ideas.md").write_text("# Ideas\n\nBuild a bird house for the balcony.\n")
    write_encrypted_pdf(root / "payslip.pdf", ["salary"])
    write_sparse(root / "disk.txt")
    return root


async def test_add_list_search_status_remove(home, tmp_path):
    root = folder(tmp_path)
    code, out, err = await byenatos(home, "docs", "add", str(root))
    assert code == 0, err
    assert f"added {root} (private): 2 files indexed (2 pages" in out and "2 skipped" in out

    code, out, _ = await byenatos(home, "docs", "list")
    assert code == 0 and str(root) in out and "private" in out
    code, out, _ = await byenatos(home, "docs", "list", "--json")
    (f,) = json.loads(out)
    assert (f["files"], f["skipped"], f["pages"]) == (2, 2, 2)

    code, out, _ = await byenatos(home, "docs", "search", "when", "is", "the", "rent", "due")
    assert code == 0
    first = out.splitlines()[:2]
    assert first[0].startswith("1. lease.pdf · page 2") and first[1].strip() == (root / "lease.pdf").as_uri() + "#page=2"
    code, out, _ = await byenatos(home, "docs", "search", "bird house", "--json")
    assert json.loads(out)[0]["lines"] == [1, 3]

    code, out, _ = await byenatos(home, "docs", "status")
    assert code == 0 and "1 folders, 2 files, 2 pages" in out
    assert "payslip.pdf: encrypted PDF: it needs a password" in out
    assert "disk.txt: 2.0 GB is over the size limit" in out

    (root / "ideas.md").unlink()
    code, out, _ = await byenatos(home, "docs", "scan")
    assert code == 0 and "1 removed" in out and "3 unchanged" in out

    code, out, _ = await byenatos(home, "docs", "remove", str(root))
    assert code == 0 and "forgot the passages of 3 files" in out
    code, out, _ = await byenatos(home, "docs", "search", "rent")
    assert "no passages found" in out
    assert root.joinpath("lease.pdf").exists()  # the files themselves are untouched


async def test_bad_input_is_one_readable_line(home, tmp_path):
    code, _, err = await byenatos(home, "docs", "add", str(tmp_path / "missing"))
    assert code == 1 and "no such folder" in one_readable_line(err)
    code, _, err = await byenatos(home, "docs", "remove", str(tmp_path))
    assert code == 1 and "not an indexed folder" in one_readable_line(err)
    code, _, err = await byenatos(home, "docs", "search", "x", "-k", "99")
    assert code == 1 and "k must be" in one_readable_line(err)
    code, _, err = await byenatos(home, "docs", "add", str(tmp_path), "--access", "world")
    assert code == 2 and "invalid choice" in err


async def test_beside_a_running_daemon(home, tmp_path):
    """`docs add` goes to the running serve, which indexes and then watches the folder."""
    root = folder(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "serve", "--port", "0", "--no-scan",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BYENATOS_HOME": str(home), "BYENATOS_SECRETS": "file"},
    )
    try:
        await asyncio.wait_for(proc.stdout.readline(), 60)  # the "gateway on …" line: it listens
        code, out, err = await byenatos(home, "docs", "add", str(root))
        assert code == 0, err
        assert "ByenatOS is indexing it" in out
        # Progress and the result, as `docs status --json` reports them, until the first index is done
        # (polled with a deadline: another process's progress cannot be awaited from here).
        async with asyncio.timeout(60):
            while True:
                code, out, _ = await byenatos(home, "docs", "status", "--json")
                status = json.loads(out)
                if status["state"] == "idle" and status["files"] == 2:
                    break
        assert status["watching"] and status["skipped_total"] == 2
        # The daemon watches the folder: a new note is found without a scan.
        (root / "later.md").write_text("The piano tuner comes on Friday.")
        async with asyncio.timeout(60):
            while True:
                code, out, _ = await byenatos(home, "docs", "search", "piano tuner", "--json")
                hits = json.loads(out)
                if hits and hits[0]["file"] == str(root / "later.md"):
                    break
    finally:
        proc.send_signal(signal.SIGINT)
        await proc.wait()


async def test_health_of_the_entry_point(home):
    code, out, _ = await byenatos(home, "docs", "--help")
    assert code == 0 and "add" in out and "search" in out
    code, out, _ = await byenatos(home, "docs", "list")
    assert code == 0 and "no folders yet" in out

