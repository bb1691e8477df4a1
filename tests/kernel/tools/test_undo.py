"""Undo copies: what a path was before each change, and rolling an agent's changes back.

The property test runs random sequences of writes, appends, creates, deletes of files and of
whole folders, in nested folders, over a random starting tree, and checks that an undo brings
back exactly the starting tree (every path, its kind, content and mode): 100% rollback."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.kernel.store import open_database
from app.kernel.tools.base import ToolError
from app.kernel.tools.undo import UndoStore

NAMES = ["a", "b", "c.txt", "d.md"]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root`: its kind, content (files) or target (symlinks), and mode."""
    out: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st_ = os.lstat(full)
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st_.st_mode))
            else:
                out[rel] = ("file", Path(full).read_bytes(), stat.S_IMODE(st_.st_mode))
    return out


@pytest.fixture
def db(tmp_path):
    database = open_database(tmp_path / "byenatos.sqlite3")
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def store(db, tmp_path):
    return UndoStore(tmp_path / "undo")


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "files"
    r.mkdir()
    return r


async def test_a_write_and_a_delete_are_rolled_back_newest_first(store, root):
    (root / "notes.txt").write_text("mine\n")
    before = snapshot(root)
    await store.keep(1, "1:0:0", root / "notes.txt")
    (root / "notes.txt").write_text("the agent's\n")
    await store.keep(1, "1:1:0", root / "new" / "deep" / "made.txt")
    (root / "new" / "deep").mkdir(parents=True)
    (root / "new" / "deep" / "made.txt").write_text("created\n")
    await store.keep(1, "1:2:0", root / "notes.txt")
    (root / "notes.txt").unlink()
    assert [e["kind"] for e in store.entries(1)] == ["file", "missing", "file"]  # newest first
    report = await store.undo(1)
    assert snapshot(root) == before
    assert report.changes == 3 and report.left == 0 and report.failed == []
    assert report.restored == [str(root / "notes.txt")]
    assert report.deleted == [str(root / "new" / "deep" / "made.txt")]
    assert store.entries(1) == []  # done: a second undo has nothing left
    assert (await store.undo(1)).changes == 0
    assert not any((store.root / "1").iterdir())  # the copies are gone with the entries


async def test_one_call_keeps_a_path_once_so_a_replay_keeps_the_first_copy(store, root):
    (root / "f").write_text("v1")
    assert await store.keep(1, "1:0:0", root / "f") is True
    (root / "f").write_text("v2")
    assert await store.keep(1, "1:0:0", root / "f") is False  # the same call again (replayed): not kept over
    (root / "f").write_text("v3")
    await store.undo(1)
    assert (root / "f").read_text() == "v1"


async def test_agents_are_rolled_back_separately(store, root):
    await store.keep(1, "1:0:0", root / "one")
    (root / "one").write_text("1")
    await store.keep(2, "2:0:0", root / "two")
    (root / "two").write_text("2")
    await store.undo(1)
    assert sorted(p.name for p in root.iterdir()) == ["two"]


async def test_symlinks_and_modes_come_back(store, root):
    (root / "target").write_text("t")
    os.symlink("target", root / "link")
    (root / "script.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "script.sh", 0o755)
    before = snapshot(root)
    await store.keep(1, "1:0:0", root / "link")
    (root / "link").unlink()
    (root / "link").write_text("not a link now")
    await store.keep(1, "1:1:0", root / "script.sh")
    (root / "script.sh").write_text("changed")
    os.chmod(root / "script.sh", 0o600)
    await store.undo(1)
    assert snapshot(root) == before


async def test_a_created_folder_with_something_else_in_it_is_kept_and_said(store, root):
    await store.keep(1, "1:0:0", root / "made" / "by-agent.txt")
    (root / "made").mkdir()
    (root / "made" / "by-agent.txt").write_text("x")
    (root / "made" / "by-the-user.txt").write_text("keep me")
    report = await store.undo(1)
    assert not (root / "made" / "by-agent.txt").exists()
    assert (root / "made" / "by-the-user.txt").read_text() == "keep me"
    assert report.kept == [str(root / "made")]


async def test_a_failed_restore_stops_and_a_second_undo_goes_on(store, root):
    (root / "f.txt").write_text("original")
    before = snapshot(root)
    await store.keep(1, "1:0:0", root / "f.txt")
    (root / "f.txt").write_text("changed once")
    await store.keep(1, "1:1:0", root / "f.txt")
    (root / "f.txt").write_text("changed twice")
    await store.keep(1, "1:2:0", root / "other.txt")
    (root / "other.txt").write_text("o")
    # the copy the middle entry needs is gone (a disk error, say): its restore fails
    [copy] = [row for row in store.root.joinpath("1").iterdir()
              if row.read_bytes() == b"changed once"]
    aside = copy.rename(root.parent / "aside")
    report = await store.undo(1)
    assert report.failed[0]["path"] == str(root / "f.txt") and report.changes == 1 and report.left == 2
    assert not (root / "other.txt").exists()  # the newest change was rolled back before it
    assert (root / "f.txt").read_text() == "changed twice"  # nothing older was applied over the gap
    aside.rename(copy)  # fixed: a second undo goes on from the entry that failed
    report = await store.undo(1)
    assert report.failed == [] and report.changes == 2
    assert snapshot(root) == before


async def test_a_file_over_the_size_limit_is_refused_before_the_change(db, tmp_path, root):
    store = UndoStore(tmp_path / "undo", max_copy_bytes=10)
    (root / "big").write_bytes(b"x" * 11)
    with pytest.raises(ToolError, match="over the 0 MB an undo copy may hold"):
        await store.keep(1, "1:0:0", root / "big")
    assert store.entries(1) == []
    with pytest.raises(ToolError, match="absolute"):
        await store.keep(1, "1:0:0", Path("relative.txt"))


# -- the property: 100% rollback ------------------------------------------------------------
def _paths(rng: random.Random, depth: int = 3) -> str:
    return "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, depth)))


def _seed_tree(root: Path, rng: random.Random) -> None:
    for _ in range(rng.randint(0, 8)):
        path = root / _paths(rng)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_bytes(rng.randbytes(rng.randint(0, 40)))
                os.chmod(path, rng.choice([0o644, 0o600, 0o755]))
        except (NotADirectoryError, FileExistsError, IsADirectoryError):
            pass


def _apply(root: Path, op: str, rel: str, data: bytes) -> bool:
    """One change to `root/rel`; False when it makes no sense there (the tool would refuse it)."""
    path = root / rel
    try:
        if op in ("write", "append", "create"):
            if path.is_dir() or (op == "create" and path.exists()):
                return False
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab" if op == "append" else "wb") as f:
                f.write(data)
        elif op == "delete":
            if not path.is_file():
                return False
            path.unlink()
        elif op == "delete_dir":
            if not path.is_dir():
                return False
            shutil.rmtree(path)
        elif op == "chmod":
            if not path.is_file():
                return False
            os.chmod(path, 0o600 if os.stat(path).st_mode & 0o100 else 0o755)
    except (NotADirectoryError, FileExistsError, IsADirectoryError):
        return False
    return True


OPS = ["write", "append", "create", "delete", "delete_dir", "chmod"]


async def _scenario(base: Path, seed: int, steps: list[tuple[str, str, bytes]], *, pid: int = 5
                    ) -> tuple[dict, dict, int]:
    """A random tree under `base`, the changes as a tool makes them (keep, then change; two
    changes per call key), then an undo. The database must be open."""
    root = base / "files"
    root.mkdir()
    _seed_tree(root, random.Random(seed))
    before = snapshot(root)
    store = UndoStore(base / "undo")
    made = 0
    for index, (op, rel, data) in enumerate(steps):
        try:
            await store.keep(pid, f"{pid}:{index // 2}:0", root / rel)
        except ToolError:
            continue
        if _apply(root, op, rel, data):
            made += 1
    report = await store.undo(pid)
    assert report.failed == []
    return before, snapshot(root), made


STEP = st.tuples(st.sampled_from(OPS), st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join),
                 st.binary(max_size=30))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), steps=st.lists(STEP, max_size=25))
def test_any_sequence_of_changes_rolls_back_completely(seed, steps):
    with tempfile.TemporaryDirectory() as base:
        database = open_database(Path(base) / "db.sqlite3")
        try:
            before, after, _ = asyncio.run(_scenario(Path(base), seed, steps))
        finally:
            database.close()
    assert after == before


SEQUENCES = int(os.environ.get("BYENATOS_UNDO_SEQUENCES", "100"))  # docs/permissions.md's figure: 2,000


async def test_rollback_rate_over_many_random_sequences(db, tmp_path):
    """The figure for docs/permissions.md: rollback success over many random sequences."""
    rng = random.Random(2026)
    complete, changes = 0, 0
    for n in range(SEQUENCES):
        steps = [(rng.choice(OPS), _paths(rng), rng.randbytes(rng.randint(0, 30))) for _ in range(rng.randint(1, 40))]
        base = tmp_path / str(n)
        base.mkdir()
        before, after, made = await _scenario(base, n, steps, pid=n + 1)
        complete += after == before
        changes += made
    print(f"\nundo: {complete}/{SEQUENCES} random sequences ({changes} changes) rolled back completely")
    assert complete == SEQUENCES, f"{complete}/{SEQUENCES} sequences rolled back completely"
    assert changes > 5 * SEQUENCES  # the sequences did change things
