"""read_file / write_file: confined to the session's workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.tools.builtin.files import read_file, write_file
from orchestrator.tools.registry import ToolContext, ToolError


@pytest.fixture
def workspace(settings):
    return Path(settings.HARNESS_WORKSPACE_ROOT) / "ws"


@pytest.fixture
def context(workspace):
    return ToolContext(run_id="r", session_id="s", workspace=workspace)


@pytest.fixture
def outside(tmp_path):
    """A directory next to the workspace, with a secret in it, that the tools must never touch."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("top secret", encoding="utf-8")
    return directory


async def test_write_then_read_back(context, workspace):
    result = await write_file.run({"path": "notes.txt", "content": "héllo wörld"}, context)
    assert result == f"wrote {len('héllo wörld'.encode())} bytes to notes.txt"
    assert (workspace / "notes.txt").read_text(encoding="utf-8") == "héllo wörld"
    assert await read_file.run({"path": "notes.txt"}, context) == "héllo wörld"


async def test_write_creates_the_workspace_and_subdirectories(context, workspace):
    assert not workspace.exists()
    await write_file.run({"path": "a/b/c.txt", "content": "deep"}, context)
    assert (workspace / "a" / "b" / "c.txt").read_text(encoding="utf-8") == "deep"
    assert await read_file.run({"path": "a/b/c.txt"}, context) == "deep"


async def test_write_overwrites(context):
    await write_file.run({"path": "f.txt", "content": "first version"}, context)
    await write_file.run({"path": "f.txt", "content": "second"}, context)
    assert await read_file.run({"path": "f.txt"}, context) == "second"


async def test_dotdot_that_stays_inside_is_allowed(context, workspace):
    await write_file.run({"path": "sub/../inside.txt", "content": "ok"}, context)
    assert (workspace / "inside.txt").read_text(encoding="utf-8") == "ok"


async def test_large_files_are_truncated_on_read(context, workspace, settings):
    settings.HARNESS_TOOL_OUTPUT_LIMIT_BYTES = 100_000
    workspace.mkdir()
    (workspace / "big.txt").write_bytes(b"a" * (100_000 + 10))
    text = await read_file.run({"path": "big.txt"}, context)
    assert text == "a" * 100_000 + "\n… (truncated: 10 more bytes)"


@pytest.mark.parametrize("path", ["../x", "../outside/secret.txt", "sub/../../x", "..", ""])
async def test_paths_escaping_the_workspace_are_refused(context, workspace, outside, path):
    with pytest.raises(ToolError) as caught:
        await write_file.run({"path": path, "content": "escaped"}, context)
    assert "outside the session workspace" in str(caught.value)
    with pytest.raises(ToolError, match="outside the session workspace"):
        await read_file.run({"path": path}, context)
    assert not (workspace.parent / "x").exists()
    assert (outside / "secret.txt").read_text(encoding="utf-8") == "top secret"


async def test_absolute_paths_are_refused_even_inside_the_workspace(context, workspace, outside):
    workspace.mkdir()
    (workspace / "inside.txt").write_text("inside", encoding="utf-8")
    for path in [str(outside / "secret.txt"), "/etc/passwd", str(workspace / "inside.txt")]:
        with pytest.raises(ToolError, match="outside the session workspace"):
            await read_file.run({"path": path}, context)
        with pytest.raises(ToolError, match="outside the session workspace"):
            await write_file.run({"path": path, "content": "overwritten"}, context)
    assert (outside / "secret.txt").read_text(encoding="utf-8") == "top secret"
    assert (workspace / "inside.txt").read_text(encoding="utf-8") == "inside"


async def test_symlinked_file_pointing_outside_is_refused(context, workspace, outside):
    workspace.mkdir()
    os.symlink(outside / "secret.txt", workspace / "link.txt")
    with pytest.raises(ToolError, match="outside the session workspace"):
        await read_file.run({"path": "link.txt"}, context)
    with pytest.raises(ToolError, match="outside the session workspace"):
        await write_file.run({"path": "link.txt", "content": "overwritten"}, context)
    assert (outside / "secret.txt").read_text(encoding="utf-8") == "top secret"


async def test_symlinked_directory_pointing_outside_is_refused(context, workspace, outside):
    workspace.mkdir()
    os.symlink(outside, workspace / "linkdir", target_is_directory=True)
    with pytest.raises(ToolError, match="outside the session workspace"):
        await read_file.run({"path": "linkdir/secret.txt"}, context)
    with pytest.raises(ToolError, match="outside the session workspace"):
        await write_file.run({"path": "linkdir/new.txt", "content": "planted"}, context)
    assert not (outside / "new.txt").exists()


async def test_dangling_symlink_pointing_outside_is_refused(context, workspace, tmp_path):
    workspace.mkdir()
    target = tmp_path / "not-yet.txt"
    os.symlink(target, workspace / "dangling.txt")
    with pytest.raises(ToolError, match="outside the session workspace"):
        await write_file.run({"path": "dangling.txt", "content": "planted"}, context)
    assert not target.exists()


async def test_symlink_staying_inside_is_allowed(context, workspace):
    workspace.mkdir()
    (workspace / "real.txt").write_text("real", encoding="utf-8")
    os.symlink(workspace / "real.txt", workspace / "alias.txt")
    assert await read_file.run({"path": "alias.txt"}, context) == "real"


async def test_missing_file_is_a_tool_error(context):
    with pytest.raises(ToolError) as caught:
        await read_file.run({"path": "nope.txt"}, context)
    assert str(caught.value) == "no such file: nope.txt"


async def test_reading_a_directory_is_a_tool_error(context, workspace):
    (workspace / "dir").mkdir(parents=True)
    with pytest.raises(ToolError, match="no such file: dir"):
        await read_file.run({"path": "dir"}, context)


def test_policies():
    assert read_file.approval == "auto" and read_file.idempotent is True
    assert write_file.approval == "ask" and write_file.cancellation == "must_finish"
    assert write_file.idempotent is False


# OS errors must become ToolErrors whose text does not reveal where the workspace lives on the server (the
# engine shows an unexpected exception as "error: <Type>: <message>", and an OSError's message holds the
# absolute path). Fixed in files.py; kept as regressions.


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"path": ".", "content": "x"}, "cannot write .: "),  # IsADirectoryError
        ({"path": "dir", "content": "x"}, "cannot write dir: "),  # IsADirectoryError
        ({"path": "file.txt/child.txt", "content": "x"}, "cannot write file.txt/child.txt: "),  # a parent is a file
        ({"path": "a\x00b", "content": "x"}, "invalid path 'a\\x00b'"),  # ValueError: embedded null byte
    ],
)
async def test_write_errors_are_plain_tool_errors(context, workspace, arguments, message):
    (workspace / "dir").mkdir(parents=True)
    (workspace / "file.txt").write_text("a file, not a directory", encoding="utf-8")
    with pytest.raises(ToolError) as caught:
        await write_file.run(arguments, context)
    assert str(caught.value).startswith(message)
    assert str(workspace) not in str(caught.value) and str(workspace.resolve()) not in str(caught.value)
    assert (workspace / "file.txt").read_text(encoding="utf-8") == "a file, not a directory"


async def test_read_of_a_nul_path_is_a_plain_tool_error(context, workspace):
    with pytest.raises(ToolError) as caught:
        await read_file.run({"path": "a\x00b"}, context)
    assert str(caught.value) == "invalid path 'a\\x00b'"



# The sandbox era: limits, FIFOs, files the sandboxed shell can use, and symlinks planted after the check.


async def test_a_fifo_in_the_workspace_does_not_hang_a_read(context, workspace):
    workspace.mkdir()
    os.mkfifo(workspace / "pipe")  # a shell command can plant one; opening it for reading would block
    with pytest.raises(ToolError, match="no such file: pipe"):
        await read_file.run({"path": "pipe"}, context)


async def test_writes_over_the_file_size_limit_are_refused(context, workspace, settings):
    settings.HARNESS_SANDBOX_FILE_SIZE_BYTES = 10
    assert await write_file.run({"path": "ok.txt", "content": "x" * 10}, context) == "wrote 10 bytes to ok.txt"
    with pytest.raises(ToolError) as caught:
        await write_file.run({"path": "big.txt", "content": "x" * 11}, context)
    assert str(caught.value) == "content is 11 bytes, over the 10-byte file size limit"
    assert not (workspace / "big.txt").exists()


async def test_content_that_is_not_text_is_a_plain_error(context):
    with pytest.raises(ToolError, match="the content is not valid Unicode text"):
        await write_file.run({"path": "s.txt", "content": "a\ud800b"}, context)


async def test_written_files_belong_to_the_sandbox_user(context, workspace):
    """What write_file writes, the sandboxed shell (another user, when the server is root) can change."""
    from orchestrator.tools.builtin.shell import shell

    await write_file.run({"path": "sub/notes.txt", "content": "v1"}, context)
    result = await shell.run({"command": "echo v2 > sub/notes.txt && mkdir sub/more && cat sub/notes.txt"}, context)
    assert result == "exit code 0\nv2\n"


def test_a_symlink_planted_after_the_check_is_not_followed(workspace, outside):
    """confined_path resolves and checks; the open then follows no symlink, so one swapped in between (a
    race with a command still running) fails the call instead of escaping."""
    from orchestrator.tools.builtin import files

    (workspace / "dir").mkdir(parents=True)
    root, parts = files.confined_path(workspace, "dir/secret.txt")
    (workspace / "dir").rmdir()
    os.symlink(outside, workspace / "dir")  # swapped after the check
    with pytest.raises(ToolError, match="outside the session workspace"):
        files._read(root, parts, "dir/secret.txt", 1000)
    with pytest.raises(ToolError, match="outside the session workspace|Not a directory"):
        files._write(root, parts, "dir/secret.txt", b"overwritten")
    assert (outside / "secret.txt").read_text(encoding="utf-8") == "top secret"
