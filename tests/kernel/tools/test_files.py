"""File tools: the working folder, the allowed folders, and everything else refused."""

from __future__ import annotations

import os

import pytest

from app.kernel.config import FileAccessSettings, Settings
from app.kernel.tools.base import ToolError
from app.kernel.tools.builtin import builtin_tools
from app.kernel.tools.files import file_delete, file_list, file_read, file_search, file_write
from tests.kernel.tools.conftest import RecordingUndo


def allowing(*folders, app_folders=None) -> Settings:
    return Settings(files=FileAccessSettings(allowed_folders=[str(f) for f in folders],
                                             app_folders=app_folders or {}))


async def test_write_read_list_in_the_working_folder(make_ctx, tool_home):
    _, workdir = tool_home
    ctx = make_ctx()
    assert (await file_write(ctx, {"path": "notes/a.txt", "content": "one\n"}))["bytes"] == 4
    await file_write(ctx, {"path": "notes/a.txt", "content": "two\n", "mode": "append"})
    assert (workdir / "notes" / "a.txt").read_text() == "one\ntwo\n"
    read = await file_read(ctx, {"path": "notes/a.txt"})
    assert read["content"] == "one\ntwo\n" and read["path"] == "notes/a.txt" and not read["truncated"]
    listing = await file_list(ctx, {})
    assert [(e["name"], e["folder"]) for e in listing["entries"]] == [("notes", True)]
    inner = await file_list(ctx, {"path": "notes"})
    assert inner["entries"][0]["name"] == "a.txt" and inner["entries"][0]["bytes"] == 8


async def test_a_long_file_is_read_in_pages(make_ctx, tool_home, monkeypatch):
    from app.kernel.tools import files

    monkeypatch.setattr(files, "MAX_READ", 10)
    (tool_home[1] / "long.txt").write_text("0123456789abcdefghij!")
    ctx = make_ctx()
    first = await file_read(ctx, {"path": "long.txt"})
    assert first["content"] == "0123456789" and first["truncated"] and first["next_offset"] == 10
    second = await file_read(ctx, {"path": "long.txt", "offset": first["next_offset"]})
    assert second["content"] == "abcdefghij"
    last = await file_read(ctx, {"path": "long.txt", "offset": 20})
    assert last["content"] == "!" and not last["truncated"] and "next_offset" not in last


@pytest.mark.parametrize("path", ["../other/secret.txt", "/etc/hostname", "~/.bashrc", "a/../../x"])
async def test_paths_outside_are_refused(make_ctx, path):
    with pytest.raises(ToolError, match="outside this agent's working folder"):
        await file_read(make_ctx(), {"path": path})
    with pytest.raises(ToolError, match="outside"):
        await file_write(make_ctx(), {"path": path, "content": "x"})


async def test_a_symlink_out_is_refused(make_ctx, tool_home, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("4711")
    (tool_home[1] / "link").symlink_to(outside)
    (tool_home[1] / "file-link").symlink_to(outside / "secret.txt")
    ctx = make_ctx()
    for path in ("link/secret.txt", "file-link"):
        with pytest.raises(ToolError, match="outside"):
            await file_read(ctx, {"path": path})
    with pytest.raises(ToolError, match="outside"):
        await file_write(ctx, {"path": "link/new.txt", "content": "x"})
    with pytest.raises(ToolError, match="outside"):
        await file_delete(ctx, {"path": "file-link"})
    assert (outside / "secret.txt").read_text() == "4711" and not (outside / "new.txt").exists()
    # a search does not wander through the link either
    found = await file_search(ctx, {"content": "4711"})
    assert found["matches"] == []


async def test_allowed_folders_for_all_and_per_app(make_ctx, tmp_path):
    shared, mine = tmp_path / "shared", tmp_path / "mine"
    shared.mkdir()
    mine.mkdir()
    (mine / "plan.md").write_text("Lisbon in May")
    settings = allowing(shared, app_folders={"agent-worker": [str(mine)]})
    ctx = make_ctx(settings=settings)
    await file_write(ctx, {"path": str(shared / "x.txt"), "content": "hello"})
    assert (shared / "x.txt").read_text() == "hello"
    read = await file_read(ctx, {"path": str(mine / "plan.md")})
    assert read["content"] == "Lisbon in May" and read["path"] == str((mine / "plan.md").resolve())
    # another app has the shared folder only
    other = make_ctx(settings=settings, app="agent-other")
    assert (await file_read(other, {"path": str(shared / "x.txt")}))["content"] == "hello"
    with pytest.raises(ToolError, match=r"outside .*allowed \(" ):
        await file_read(other, {"path": str(mine / "plan.md")})


async def test_byenatos_own_folders_stay_shut_even_inside_an_allowed_folder(make_ctx, tool_home, tmp_path):
    paths, _ = tool_home
    paths.settings_file.write_text("{}")
    ctx = make_ctx(settings=allowing(tmp_path))  # the user allowed a folder that holds the home
    for target in (paths.settings_file, paths.data_dir / "agents" / "alice" / "secret.txt",
                   paths.data_dir / "secrets.enc"):
        with pytest.raises(ToolError, match="outside"):
            await file_write(ctx, {"path": str(target), "content": '{"files": {"allowed_folders": ["/"]}}'})
    assert paths.settings_file.read_text() == "{}"
    # its own working folder, inside the data folder, is fine
    assert (await file_write(ctx, {"path": "ok.txt", "content": "x"}))["path"] == "ok.txt"


async def test_search_by_name_and_by_content(make_ctx, tool_home):
    _, workdir = tool_home
    (workdir / "trips").mkdir()
    (workdir / "trips" / "lisbon.md").write_text("# Lisbon\nTram 28 at dawn\nPastéis de nata\n")
    (workdir / "trips" / "porto.md").write_text("# Porto\nport wine\n")
    (workdir / "todo.txt").write_text("book the tram\n")
    (workdir / "blob.bin").write_bytes(b"tram\x00\x01\x02")
    ctx = make_ctx()
    by_name = await file_search(ctx, {"name": "*.MD"})
    assert sorted(m["path"] for m in by_name["matches"]) == ["trips/lisbon.md", "trips/porto.md"]
    by_content = await file_search(ctx, {"content": "TRAM"})
    assert [(m["path"], m["line"]) for m in by_content["matches"]] == [("todo.txt", 1), ("trips/lisbon.md", 2)]
    both = await file_search(ctx, {"name": "*.md", "content": r"^#\s+P", "regex": True})
    assert [(m["path"], m["text"]) for m in both["matches"]] == [("trips/porto.md", "# Porto")]
    capped = await file_search(ctx, {"content": "#", "max_results": 1})
    assert len(capped["matches"]) == 1 and capped["truncated"] and "1 matches" in capped["stopped"]


async def test_search_arguments_are_checked(make_ctx):
    ctx = make_ctx()
    with pytest.raises(ToolError, match="give 'name'"):
        await file_search(ctx, {})
    with pytest.raises(ToolError, match="regular expression"):
        await file_search(ctx, {"content": "(", "regex": True})
    with pytest.raises(ToolError, match="max_results"):
        await file_search(ctx, {"content": "x", "max_results": 0})
    with pytest.raises(ToolError, match="not a folder"):
        await file_search(ctx, {"path": "nope", "content": "x"})


async def test_write_and_delete_keep_an_undo_copy_first(make_ctx, tool_home):
    _, workdir = tool_home
    undo = RecordingUndo()
    ctx = make_ctx(undo=undo)
    await file_write(ctx, {"path": "a.txt", "content": "first"})
    await file_write(ctx, {"path": "a.txt", "content": "second"})
    assert (await file_delete(ctx, {"path": "a.txt"}))["deleted"]
    target = (workdir / "a.txt").resolve()
    assert undo.kept == [(target, None), (target, b"first"), (target, b"second")]
    assert not target.exists()


async def test_delete_refuses_folders_roots_and_missing_files(make_ctx, tool_home, tmp_path):
    _, workdir = tool_home
    (workdir / "sub").mkdir()
    ctx = make_ctx(settings=allowing(tmp_path / "allowed"))
    (tmp_path / "allowed").mkdir()
    with pytest.raises(ToolError, match="files only"):
        await file_delete(ctx, {"path": "sub"})
    with pytest.raises(ToolError, match="root folder"):
        await file_delete(ctx, {"path": "."})
    with pytest.raises(ToolError, match="root folder"):
        await file_delete(ctx, {"path": str(tmp_path / "allowed")})
    with pytest.raises(ToolError, match="no file"):
        await file_delete(ctx, {"path": "gone.txt"})


async def test_bad_arguments_are_tool_errors(make_ctx, tool_home):
    ctx = make_ctx()
    (tool_home[1] / "bin.dat").write_bytes(b"\x00\x01")
    cases = [
        (file_read, {}, "'path'"),
        (file_read, {"path": 3}, "'path'"),
        (file_read, {"path": "a\x00b"}, "NUL"),
        (file_read, {"path": "x.txt", "offset": -1}, "'offset'"),
        (file_read, {"path": "bin.dat"}, "binary"),
        (file_read, {"path": "missing.txt"}, "no file"),
        (file_write, {"path": "a.txt"}, "'content'"),
        (file_write, {"path": "a.txt", "content": "x", "mode": "prepend"}, "'mode'"),
        (file_list, {"path": "bin.dat"}, "not a folder"),
    ]
    for call, args, message in cases:
        with pytest.raises(ToolError, match=message):
            await call(ctx, args)


def test_every_builtin_schema_is_closed_and_names_its_required_arguments():
    registry = builtin_tools()
    for name in registry.names():
        tool = registry.get(name)
        params = tool.parameters
        assert params["type"] == "object" and params["additionalProperties"] is False, name
        assert set(params.get("required", [])) <= set(params["properties"]), name


def test_risk_classes_of_the_file_tools():
    registry = builtin_tools()
    assert {n: registry.get(n).risk.value for n in
            ("file_list", "file_read", "file_search", "file_write", "file_delete")} == {
        "file_list": "read", "file_read": "read", "file_search": "read", "file_write": "write",
        "file_delete": "write"}


@pytest.mark.skipif(os.name != "posix", reason="symlinks need privileges on Windows")
async def test_a_write_does_not_follow_a_symlink_to_a_file_inside(make_ctx, tool_home):
    _, workdir = tool_home
    (workdir / "real.txt").write_text("old")
    (workdir / "alias.txt").symlink_to(workdir / "real.txt")
    ctx = make_ctx()
    # the link resolves inside: the write goes to the real file (resolved before it is opened)
    await file_write(ctx, {"path": "alias.txt", "content": "new"})
    assert (workdir / "real.txt").read_text() == "new"
