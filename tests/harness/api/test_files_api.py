"""Uploads into a session's workspace and its files (docs/api.md, "Files"): limits, hostile names, listing
and download, roles, symlinks, and the transcript note the model also sees."""

from __future__ import annotations

import asyncio
import io
import os

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.test import Client, RequestFactory

from harness.client_commands import CommandError
from harness.uploads import CHUNK_BYTES, read_upload
from orchestrator import events
from orchestrator.engine.workspace import session_workspace
from orchestrator.models import Message, MessageRole, WorkspaceUpload
from tests.factories import session_state, shared_world
from tests.harness.api.test_sharing_api import Caller as JsonCaller, error

pytestmark = pytest.mark.django_db


class Caller(JsonCaller):
    def upload(self, session_id, name: str, content: bytes, *, field: str = "file"):
        """multipart/form-data, as a browser's FormData sends it."""
        handle = io.BytesIO(content)
        handle.name = name
        return self.client.post(f"/api/sessions/{session_id}/files", {field: handle}, **self.auth)

    def upload_raw(self, session_id, query: str, content: bytes):
        return self.client.generic("POST", f"/api/sessions/{session_id}/files{query}", content,
                                   content_type="application/octet-stream", **self.auth)

    def get(self, path: str):
        return self.client.get(path, **self.auth)


@pytest.fixture
def world():
    return shared_world(live=False)


@pytest.fixture
def alice(world):
    return Caller(world.users["owner"])


def download(response) -> bytes:
    """The body, read as the ASGI server reads it: through the async iterator (a sync one would be read whole
    into memory before a byte is sent)."""
    assert response.is_async

    async def read() -> bytes:
        return b"".join([part async for part in response])

    return async_to_sync(read)()


def notes(session_id) -> list[str]:
    return list(Message.objects.filter(session_id=session_id, role=MessageRole.NOTE).values_list("text", flat=True))


def test_an_upload_lands_in_the_workspace_is_noted_listed_and_downloadable(world, alice):
    sid = world.session.id
    content = b"a,b\n" * (3 * 1024)  # 12 KiB
    response = alice.upload(sid, "report.csv", content)
    assert response.status_code == 201, response.json()
    answer = response.json()
    assert {k: answer[k] for k in ("name", "path", "size", "uploaded_by")} == {
        "name": "report.csv", "path": "report.csv", "size": len(content), "uploaded_by": "alice"}
    assert (session_workspace(sid) / "report.csv").read_bytes() == content

    note = Message.objects.get(pk=answer["message_id"])
    assert (note.role, note.text, note.author.username, note.run_id) == ("note", "uploaded report.csv, 12 KB",
                                                                          "alice", None)
    snapshot = alice.get(f"/api/sessions/{sid}").json()
    assert snapshot["messages"][-1]["role"] == "note" and snapshot["messages"][-1]["author"] == "alice"

    listing = alice.get(f"/api/sessions/{sid}/files").json()
    [entry] = listing["files"]
    assert (entry["name"], entry["path"], entry["size"], entry["uploaded_by"]) == ("report.csv", "report.csv",
                                                                                    len(content), "alice")
    assert entry["modified_at"].endswith("+00:00") and listing["truncated"] is False

    got = alice.get(f"/api/sessions/{sid}/files/report.csv")
    assert got.status_code == 200
    assert got["Content-Disposition"] == 'attachment; filename="report.csv"'
    assert got["Content-Type"] == "text/csv; charset=utf-8"
    assert download(got) == content


def test_a_raw_body_named_by_the_query_and_the_same_name_replaces_the_file(world, alice):
    sid = world.session.id
    assert alice.upload_raw(sid, "?name=notes.txt", b"first").status_code == 201
    response = alice.upload_raw(sid, "/?name=notes.txt", b"second version")
    assert response.status_code == 201 and response.json()["size"] == 14
    assert (session_workspace(sid) / "notes.txt").read_bytes() == b"second version"
    assert notes(sid) == ["uploaded notes.txt, 5 bytes", "uploaded notes.txt, 14 bytes"]
    assert [f["path"] for f in alice.get(f"/api/sessions/{sid}/files").json()["files"]] == ["notes.txt"]
    assert error(alice.upload_raw(sid, "", b"no name")) == (400, "missing_field")


def test_uploads_past_the_limit_are_refused_and_leave_nothing(world, alice, settings):
    settings.HARNESS_UPLOAD_LIMIT_BYTES = 1000
    sid = world.session.id
    assert alice.upload(sid, "exact.bin", b"x" * 1000).status_code == 201
    assert alice.upload_raw(sid, "?name=exact2.bin", b"x" * 1000).status_code == 201
    before = session_state(sid)
    for response in (alice.upload(sid, "big.bin", b"x" * 1001), alice.upload_raw(sid, "?name=big.bin", b"x" * 1001),
                     alice.upload(sid, "huge.bin", b"x" * 200_000)):
        assert error(response) == (413, "body_too_large")
        assert "1000 bytes" in response.json()["detail"]
    assert session_state(sid) == before
    assert sorted(os.listdir(session_workspace(sid))) == ["exact.bin", "exact2.bin"]


class Trickle(io.RawIOBase):
    """An endless body that counts what was read from it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        buffer[:] = b"x" * len(buffer)
        self.read_bytes += len(buffer)
        return len(buffer)


def test_the_limit_holds_while_streaming_a_body_of_unknown_length(settings):
    """No Content-Length (a chunked body): reading stops just past the limit, the rest is never read."""
    settings.HARNESS_UPLOAD_LIMIT_BYTES = 100_000
    body = Trickle()
    request = RequestFactory().generic("POST", "/api/sessions/x/files?name=a", b"",
                                       content_type="application/octet-stream")
    request.META.pop("CONTENT_LENGTH", None)
    request._stream = io.BufferedReader(body)
    with pytest.raises(CommandError) as refused:
        read_upload(request)
    assert (refused.value.status, refused.value.code) == (413, "body_too_large")
    assert body.read_bytes <= 100_000 + 2 * CHUNK_BYTES + io.DEFAULT_BUFFER_SIZE
    # A declared length over the limit is refused before the body is parsed.
    body = Trickle()
    request = RequestFactory().generic("POST", "/api/sessions/x/files?name=a", b"",
                                       content_type="application/octet-stream")
    request.META["CONTENT_LENGTH"] = str(10**9)
    request._stream = io.BufferedReader(body)
    with pytest.raises(CommandError):
        read_upload(request)
    assert body.read_bytes == 0


@pytest.mark.parametrize(("name", "stored"), [
    ("../x", "x"), ("../../../../tmp/escaped.txt", "escaped.txt"), ("/etc/passwd", "passwd"),
    ("C:\\Users\\me\\evil.bat", "evil.bat"), ("dir/../../up.txt", "up.txt"), ("ünïcode ☃.txt", "ünïcode ☃.txt"),
])
def test_hostile_names_are_reduced_to_a_name_in_the_workspace(world, alice, name, stored, tmp_path):
    sid = world.session.id
    workspace = session_workspace(sid)
    for response in (alice.upload(sid, name, b"payload"), alice.upload_raw(sid, f"?name={_quote(name)}", b"payload")):
        assert response.status_code == 201, response.json()
        assert response.json()["name"] == stored
    assert os.listdir(workspace) == [stored]
    assert not (workspace.parent / "escaped.txt").exists() and not (workspace.parent / "x").exists()


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


@pytest.mark.parametrize("name", ["a\x00b.txt", "\x00", "line\nbreak", "..", ".", "/", "dir/", "x" * 256,
                                  "é" * 128, ".upload-0a1b.part"])
def test_names_that_cannot_be_made_safe_are_refused(world, alice, name):
    sid = world.session.id
    before = session_state(sid)
    response = alice.upload_raw(sid, f"?name={_quote(name)}", b"payload")
    assert error(response) == (400, "invalid_name"), name
    assert session_state(sid) == before
    assert not session_workspace(sid).exists() or os.listdir(session_workspace(sid)) == []


def test_a_multipart_body_without_a_usable_file_or_not_multipart_at_all(world, alice):
    sid = world.session.id
    path = f"/api/sessions/{sid}/files"
    broken = alice.client.generic("POST", path, b"--not really multipart",
                                  content_type="multipart/form-data; boundary=xyz", **alice.auth)
    assert error(broken) in ((400, "invalid_upload"), (400, "missing_file"))
    no_boundary = alice.client.generic("POST", path, b"x", content_type="multipart/form-data", **alice.auth)
    assert error(no_boundary) == (400, "invalid_upload")
    assert error(alice.client.post(path, {"text": "no file"}, **alice.auth)) == (400, "missing_file")
    handle = io.BytesIO(b"x")
    handle.name = ".."  # the parser drops a file part with no usable name
    assert error(alice.client.post(path, {"file": handle}, **alice.auth)) == (400, "missing_file")
    two = [io.BytesIO(b"1"), io.BytesIO(b"2")]
    two[0].name, two[1].name = "one.txt", "two.txt"
    assert error(alice.client.post(path, {"file": two[0], "other": two[1]}, **alice.auth)) == (400, "invalid_upload")
    assert notes(sid) == []


def test_roles_upload_is_for_collaborators_reading_for_anyone_who_can_view(world, alice):
    sid = world.session.id
    assert alice.upload(sid, "shared.txt", b"for everyone").status_code == 201
    before = session_state(sid)
    for role, can_upload in [("collaborator", True), ("group_member", True), ("viewer", False),
                             ("non_member", False)]:
        caller = Caller(world.users[role])
        if role == "non_member":
            assert error(caller.upload(sid, "mine.txt", b"x")) == (404, "not_found")
            assert error(caller.get(f"/api/sessions/{sid}/files")) == (404, "not_found")
            assert error(caller.get(f"/api/sessions/{sid}/files/shared.txt")) == (404, "not_found")
            continue
        assert download(caller.get(f"/api/sessions/{sid}/files/shared.txt")) == b"for everyone"
        assert [f["path"] for f in caller.get(f"/api/sessions/{sid}/files").json()["files"]][-1] == "shared.txt"
        if not can_upload:
            assert error(caller.upload(sid, "mine.txt", b"x")) == (403, "forbidden")
    assert session_state(sid) == before
    assert error(Client().get(f"/api/sessions/{sid}/files")) == (401, "unauthenticated")
    assert error(alice.get("/api/sessions/not-a-uuid/files")) == (404, "not_found")
    assert error(alice.get(f"/api/sessions/{sid}/files/missing.txt")) == (404, "not_found")
    collaborator = Caller(world.users["collaborator"])
    assert collaborator.upload(sid, "theirs.txt", b"y").json()["uploaded_by"] == "bob"


def test_the_portal_uploads_with_its_session_cookie_and_csrf(world):
    sid = world.session.id
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.users["owner"])
    browser.get(f"/sessions/{sid}/")  # sets the csrftoken cookie
    handle = io.BytesIO(b"from the page")
    handle.name = "page.txt"
    refused = browser.post(f"/api/sessions/{sid}/files", {"file": handle})
    assert error(refused) == (403, "csrf_failed") and notes(sid) == []
    handle.seek(0)
    accepted = browser.post(f"/api/sessions/{sid}/files", {"file": handle},
                            HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value)
    assert accepted.status_code == 201 and notes(sid) == ["uploaded page.txt, 13 bytes"]
    broken = browser.generic("POST", f"/api/sessions/{sid}/files", b"--nope", content_type="multipart/form-data; "
                             "boundary=nope", HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value)
    assert broken.status_code == 400 and broken["Content-Type"] == "application/json"


def test_what_the_agent_wrote_is_listed_and_symlinks_out_are_never_followed(world, alice, tmp_path):
    sid = world.session.id
    workspace = session_workspace(sid)
    (workspace / "out").mkdir(parents=True)
    (workspace / "out" / "result.txt").write_text("42\n")
    (workspace / "page.html").write_text("<script>alert(1)</script>")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (workspace / "leak.txt").symlink_to(secret)
    (workspace / "outside-dir").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(workspace / "pipe")

    listed = {f["path"]: f for f in alice.get(f"/api/sessions/{sid}/files").json()["files"]}
    assert set(listed) == {"out/result.txt", "page.html"}
    assert listed["out/result.txt"]["uploaded_by"] is None and listed["out/result.txt"]["name"] == "result.txt"
    assert download(alice.get(f"/api/sessions/{sid}/files/out/result.txt")) == b"42\n"
    html = alice.get(f"/api/sessions/{sid}/files/page.html")
    assert html["Content-Type"] == "application/octet-stream"
    assert html["Content-Disposition"].startswith("attachment;") and "sandbox" in html["Content-Security-Policy"]
    assert html["X-Content-Type-Options"] == "nosniff"
    for path in ("leak.txt", "outside-dir/secret.txt", "pipe", "out", "../" + tmp_path.name + "/secret.txt",
                 "%2Fetc%2Fpasswd", "out/%00"):
        assert error(alice.get(f"/api/sessions/{sid}/files/{path}")) == (404, "not_found"), path

    # An upload named like a symlink replaces the link; it never writes through it.
    assert alice.upload(sid, "leak.txt", b"uploaded").status_code == 201
    assert secret.read_text() == "outside"
    assert not (workspace / "leak.txt").is_symlink() and (workspace / "leak.txt").read_bytes() == b"uploaded"
    # A directory of that name is in the way: refused, the directory kept.
    assert error(alice.upload(sid, "out", b"x")) == (400, "invalid_name")
    assert (workspace / "out" / "result.txt").exists()
    assert sorted(n for n in os.listdir(workspace) if n.startswith(".upload-")) == []


def test_the_note_is_published_after_commit(world, alice, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = alice.upload(world.session.id, "live.txt", b"hello")
    assert len(callbacks) == 1  # nothing is published before the commit

    async def commit_while_listening() -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(events.session_group(world.session.id), channel)
        await sync_to_async(callbacks[0])()
        return (await asyncio.wait_for(layer.receive(channel), timeout=5))["event"]

    event = async_to_sync(commit_while_listening)()
    assert event == {"type": "message.completed", "message_id": response.json()["message_id"], "run_id": "",
                     "role": "note", "status": "complete", "text": "uploaded live.txt, 5 bytes", "author": "alice"}
    assert WorkspaceUpload.objects.get().message_id == event["message_id"]


def test_a_workspace_that_cannot_be_written_is_a_503_and_nothing_is_recorded(world, alice, settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings.HARNESS_WORKSPACE_ROOT = blocker
    before = session_state(world.session.id)
    response = alice.upload(world.session.id, "a.txt", b"x")
    assert error(response) == (503, "workspace_unavailable")
    assert str(tmp_path) not in response.json()["detail"]
    assert session_state(world.session.id) == before
    assert alice.get(f"/api/sessions/{world.session.id}/files").json() == {"files": [], "truncated": False}


def test_a_long_listing_is_cut_newest_first_and_says_so(world, alice, monkeypatch):
    from orchestrator import workspace_files

    workspace = session_workspace(world.session.id)
    (workspace / "d").mkdir(parents=True)
    for index in range(4):
        path = workspace / "d" / f"f{index}.txt"
        path.write_text(str(index))
        os.utime(path, (1_700_000_000 + index, 1_700_000_000 + index))
    monkeypatch.setattr(workspace_files, "MAX_LISTED", 2)
    listing = alice.get(f"/api/sessions/{world.session.id}/files").json()
    assert ([f["path"] for f in listing["files"]], listing["truncated"]) == (["d/f3.txt", "d/f2.txt"], True)
    monkeypatch.setattr(workspace_files, "MAX_LISTED", 10)
    monkeypatch.setattr(workspace_files, "MAX_SCANNED", 3)
    listing = alice.get(f"/api/sessions/{world.session.id}/files").json()
    assert (len(listing["files"]), listing["truncated"]) == (3, True)
    monkeypatch.setattr(workspace_files, "MAX_SCANNED", 4)
    assert alice.get(f"/api/sessions/{world.session.id}/files").json()["truncated"] is False


def test_a_deep_or_wide_tree_is_listed_without_running_out_of_descriptors(world, alice):
    """Depth first: one descriptor open per level, whatever the width; nothing below MAX_DEPTH levels."""
    from orchestrator import workspace_files

    import resource

    workspace = session_workspace(world.session.id)
    headroom = 150
    for index in range(2 * headroom):  # wider than the descriptors left to the process below
        (workspace / f"w{index}" / "sub").mkdir(parents=True)
        (workspace / f"w{index}" / "sub" / "inside.txt").write_text("wide")
    deep = workspace.joinpath(*[f"d{level}" for level in range(workspace_files.MAX_DEPTH + 1)])
    deep.mkdir(parents=True)
    (deep.parent / "deepest-listed.txt").write_text("deep")
    (deep / "too-deep.txt").write_text("deeper")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + headroom, hard))
    try:
        paths = {f["path"] for f in alice.get(f"/api/sessions/{world.session.id}/files").json()["files"]}
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert sum(path.endswith("/sub/inside.txt") for path in paths) == 2 * headroom
    assert any(path.endswith("/deepest-listed.txt") for path in paths)
    assert not any(path.endswith("/too-deep.txt") for path in paths)


def test_names_no_url_can_carry_are_left_out_of_the_listing_and_a_symlink_loop_is_not_found(world, alice, client):
    """What the agent may write: a name that is not UTF-8 or holds a newline is not listed (the listing says it
    is incomplete) instead of breaking the listing and the Files panel; a symlink loop is a 404, not a 500."""
    sid = world.session.id
    workspace = session_workspace(sid)
    workspace.mkdir(parents=True)
    (workspace / "fine.txt").write_text("ok")
    assert alice.get(f"/api/sessions/{sid}/files").json()["truncated"] is False  # (all listed: it can say so)
    with open(os.path.join(os.fsencode(workspace), b"bad\xff.txt"), "wb") as bad:
        bad.write(b"x")
    (workspace / "line\nbreak.txt").write_text("x")
    os.symlink("loop-b", workspace / "loop-a")
    os.symlink("loop-a", workspace / "loop-b")

    listing = alice.get(f"/api/sessions/{sid}/files")
    assert listing.status_code == 200
    assert [f["path"] for f in listing.json()["files"]] == ["fine.txt"] and listing.json()["truncated"] is True
    client.force_login(world.users["owner"])
    panel = client.get(f"/sessions/{sid}/files")
    assert panel.status_code == 200 and "fine.txt" in panel.content.decode()
    assert error(alice.get(f"/api/sessions/{sid}/files/loop-a")) == (404, "not_found")
