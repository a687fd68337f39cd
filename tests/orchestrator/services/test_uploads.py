"""orchestrator/services/uploads.py: names, sizes, and an upload while a run is live (the file lands at once;
the model reads the note at its next turn, after the tool results of the turn in flight)."""

from __future__ import annotations

import io

import pytest

from orchestrator.models import Message
from orchestrator.services.approvals import approval_decide
from orchestrator.services.errors import InvalidInput
from orchestrator.services.uploads import clean_upload_name, file_upload, human_size
from tests.helpers import db, shell_script, start, wait_terminal, wait_until
from tests.helpers import pending_approval


@pytest.mark.parametrize(("size", "text"), [
    (0, "0 bytes"), (1, "1 byte"), (1023, "1023 bytes"), (1024, "1 KB"), (12 * 1024, "12 KB"),
    (12 * 1024 + 700, "13 KB"), (1024**2, "1.0 MB"), (int(3.4 * 1024**2), "3.4 MB"), (25 * 1024**2, "25 MB"),
    (int(1.2 * 1024**3), "1.2 GB"),
])
def test_sizes_in_the_note(size, text):
    assert human_size(size) == text


@pytest.mark.parametrize(("name", "cleaned"), [
    ("report.csv", "report.csv"), ("../x", "x"), ("/etc/passwd", "passwd"), ("a\\b\\c.txt", "c.txt"),
    ("  spaced name.txt ", "spaced name.txt"), ("x" * 255, "x" * 255), (".hidden", ".hidden"),
])
def test_names_are_reduced_to_their_last_component(name, cleaned):
    assert clean_upload_name(name) == cleaned


@pytest.mark.parametrize("name", ["", " ", ".", "..", "a/..", "dir/", "a\x00b", "tab\there", "x" * 256, "é" * 128,
                                  "\ud800.txt", "bell\x07"])
def test_names_that_cannot_be_made_safe(name):
    with pytest.raises(InvalidInput) as refused:
        clean_upload_name(name)
    assert refused.value.code == "invalid_name"


@pytest.mark.django_db(transaction=True)
async def test_an_upload_while_a_run_waits_reaches_the_model_after_the_tool_result(worker, session, user, settings):
    run = await start(session, user, shell_script("echo tool ran", {"echo": True}))
    approval = await wait_until(lambda: pending_approval(run.id), what="the shell approval")
    upload = await db(file_upload, session_id=session.id, user=user, name="data.csv", content=io.BytesIO(b"1,2\n"))
    assert (settings.HARNESS_WORKSPACE_ROOT / str(session.id) / "data.csv").read_bytes() == b"1,2\n"
    assert (await db(approval_decide, approval_id=approval.id, user=user, decision="approve")).accepted
    run = await wait_terminal(run.id)
    assert run.outcome == "completed"
    answer = await db(lambda: Message.objects.filter(run=run, role="assistant").order_by("-id").first().text)
    # The echo is the model's input: the tool's result, then the note (never between the call and its result).
    assert "[tool] exit code 0\ntool ran\n [user] [uploaded data.csv, 4 bytes]" in answer, answer
    note = await db(Message.objects.get, pk=upload.message_id)
    assert note.id < (await db(lambda: Message.objects.filter(run=run, role="tool").get().id))
