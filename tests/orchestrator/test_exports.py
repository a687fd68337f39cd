"""A session's export (orchestrator/exports.py, `GET /api/sessions/<id>/export`): a session with a tool call,
an approval and a stop, as JSON and as Markdown, through the real worker and the HTTP API."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from orchestrator.exports import export_markdown, session_export
from orchestrator.services.approvals import approval_decide
from orchestrator.services.runs import run_stop
from orchestrator.services.tokens import api_token_create
from tests.helpers import db, script, start, start_parked_on_shell, wait_terminal, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


async def a_session_with_a_tool_call_an_approval_and_a_stop(session, user):
    # A run whose model asks for the shell (approved: echo runs), answers, then a second run that is stopped.
    run, approval = await start_parked_on_shell(session, user, "echo 'from ```the``` shell'",
                                                {"text": "The shell said hello."})
    await db(approval_decide, approval_id=approval.id, user=user, decision="approve")
    await wait_terminal(run.id, timeout=20)
    stopped = await start(session, user, script({"words": 5000, "delay_ms": 5}))
    await wait_until(lambda: stopped.messages.filter(role="assistant").exclude(text="").exists(), what="streaming")
    await db(run_stop, session_id=session.id, requested_by=user)
    await wait_terminal(stopped.id, timeout=20)
    return run, stopped


async def test_json_holds_the_snapshot_and_every_message_call_approval_and_run(worker, session, user):
    run, stopped = await a_session_with_a_tool_call_an_approval_and_a_stop(session, user)
    export = await db(session_export, session)
    assert export["format"] == "harness-export/1" and export["owner"] == user.get_username()
    assert export["session"]["id"] == str(session.id) and export["session"]["messages"]
    assert [r["id"] for r in export["runs"]] == [str(run.id), str(stopped.id)]
    first, second = export["runs"]
    assert [c["name"] for c in first["function_calls"]] == ["shell"]
    assert first["function_calls"][0]["status"] == "succeeded"
    assert [(a["status"], a["decided_by"]) for a in first["approvals"]] == [("approved", user.get_username())]
    assert second["outcome"] == "stopped" and second["stop"]["requested_by"] == user.get_username()
    roles = [m["role"] for m in export["messages"]]
    assert roles.count("user") == 2 and "tool" in roles and roles.count("assistant") >= 3
    json.dumps(export)  # all of it is JSON


async def test_markdown_reads_as_the_transcript_with_calls_fenced_and_the_stop_noted(worker, session, user):
    await a_session_with_a_tool_call_an_approval_and_a_stop(session, user)
    text = export_markdown(await db(session_export, session))
    assert text.startswith(f"# {session.title}\n")
    assert f"## {user.get_username()} · user · " in text  # a heading per message: author, role, time
    assert "## assistant · assistant · " in text and "## tool · tool · " in text
    assert 'Tool `shell` with:\n\n```json\n{\n  "command": "echo \'from ```the``` shell\'"\n}\n```' not in text
    # The arguments hold a run of three backticks: the fence is longer, so it cannot be closed early.
    assert '````json\n{\n  "command": "echo \'from ```the``` shell\'"\n}\n````' in text
    assert "Result:\n\n````\nexit code 0\nfrom ```the``` shell" in text
    assert "The shell said hello." in text
    assert f"> **Stopped** by {user.get_username()} at " in text
    assert "> Run completed at " in text


async def test_the_api_sends_a_download_in_either_format_to_anyone_who_can_view(worker, session, user,
                                                                                django_user_model):
    await a_session_with_a_tool_call_an_approval_and_a_stop(session, user)
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {await db(api_token_create, user=user)}"}
    base = f"/api/sessions/{session.id}/export"
    response = await db(client.get, base, **auth)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="session-{session.id}.json"'
    assert json.loads(response.content)["runs"]
    response = await db(client.get, base, {"format": "markdown"}, **auth)
    assert response.status_code == 200 and response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="session-{session.id}.md"'
    assert response.content.decode().startswith(f"# {session.title}")
    response = await db(client.get, base, {"format": "pdf"}, **auth)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_field")
    from orchestrator.models import SessionMember

    viewer = await db(django_user_model.objects.create_user, username="victor", password="victor-pw-1")
    await db(SessionMember.objects.create, session=session, user=viewer, role="viewer")
    response = await db(client.get, base, HTTP_AUTHORIZATION=f"Bearer {await db(api_token_create, user=viewer)}")
    assert response.status_code == 200  # a viewer exports
    stranger = await db(django_user_model.objects.create_user, username="mallory", password="mallory-pw-1")
    response = await db(client.get, base, HTTP_AUTHORIZATION=f"Bearer {await db(api_token_create, user=stranger)}")
    assert (response.status_code, response.json()["error"]) == (404, "not_found")  # as for a missing session


@pytest.mark.django_db
def test_an_export_reads_a_fixed_number_of_queries_however_many_runs(session):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import add_calls, make_run

    def queries() -> tuple[int, str]:
        with CaptureQueriesContext(connection) as captured:
            text = export_markdown(session_export(session))
        return len(captured), text

    def add_run(n: int) -> None:
        add_calls(make_run(session), ("shell", {"command": f"echo {n}"}))

    add_run(0)
    one, text = queries()
    for n in range(1, 6):
        add_run(n)
    six, text = queries()
    assert one == six  # not two more per run
    assert text.count("Asked to run `shell`") == 6 and '"command": "echo 5"' in text
