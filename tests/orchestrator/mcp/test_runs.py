"""Whole runs with real MCP servers (the real worker, the real sandbox, the scripted model): a stop in the
middle of a call cancels the server's handler and the receipt says the server was notified; per-tool
approvals; arguments checked against the server's schema; a server that never starts leaves the run its
other tools; two sessions each get their own stdio server in their own workspace, stopped when idle."""

from __future__ import annotations

import asyncio

import pytest
from django.test import Client

from orchestrator.engine import context as context_module
from orchestrator.engine.workspace import session_workspace
from orchestrator.mcp.manager import get_manager
from orchestrator.models import CallStatus, FunctionCall, Run
from orchestrator.services.approvals import approval_decide
from orchestrator.services.runs import run_stop
from orchestrator.services.sessions import session_create
from tests.helpers import db, pending_approval, script, start, wait_terminal, wait_until
from devtools.mcp_servers import stdio_server

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 30.0


def calls_of(run_id) -> list[FunctionCall]:
    return list(FunctionCall.objects.filter(run_id=run_id).order_by("created_at", "position"))


def call_script(*calls: tuple[str, dict], then: str = "done") -> str:
    return script({"calls": [{"name": name, "arguments": arguments} for name, arguments in calls]}, {"text": then})


async def stop_mid_call(session, user, started, name: str, arguments: dict) -> Run:
    run = await start(session, user, call_script((name, arguments)))
    await wait_until(started.exists, timeout=TIMEOUT, what=f"{started.name}")
    assert (await db(run_stop, session_id=session.id, requested_by=user)).accepted
    return await wait_terminal(run.id, timeout=TIMEOUT)


async def test_a_stop_cancels_a_stdio_servers_call_and_the_receipt_says_the_server_was_notified(
        worker, session, user, mcp_config, stdio_python):
    mcp_config({"files": stdio_server(stdio_python, approval="auto")})
    workspace = session_workspace(session.id)
    run = await stop_mid_call(session, user, workspace / "started-s1", "mcp__files__wait", {"seconds": 120, "tag": "s1"})
    assert run.outcome == "stopped"
    await wait_until((workspace / "cancelled-s1").exists, timeout=TIMEOUT, what="the handler's cancellation")
    assert not (workspace / "finished-s1").exists()
    [call] = await db(calls_of, run.id)
    assert call.status == CallStatus.CANCELLED and call.result == "cancelled: run stopped by alice (server notified)"
    assert run.receipt["cancelled_calls"] == [
        {"call_id": "call_t1_0", "name": "mcp__files__wait", "status": "cancelled", "note": "server notified"}]
    assert run.receipt["partly_run_calls"] == []


async def test_a_stop_cancels_an_http_servers_call(worker, session, user, mcp_config, http_server):
    url, record, _ = http_server
    mcp_config({"search": {"url": url, "approval": "auto"}})
    run = await stop_mid_call(session, user, record / "started-h1", "mcp__search__wait", {"seconds": 120, "tag": "h1"})
    assert run.outcome == "stopped"
    await wait_until((record / "cancelled-h1").exists, timeout=TIMEOUT, what="the handler's cancellation")
    assert run.receipt["cancelled_calls"][0]["note"] == "server notified"


async def test_on_stop_finish_lets_the_call_complete(worker, session, user, mcp_config, http_server):
    url, record, _ = http_server
    mcp_config({"search": {"url": url, "approval": "auto", "tools": {"wait": {"on_stop": "finish"}}}})
    run = await stop_mid_call(session, user, record / "started-f1", "mcp__search__wait", {"seconds": 1, "tag": "f1"})
    assert run.outcome == "stopped"
    assert (record / "finished-f1").exists() and not (record / "cancelled-f1").exists()
    [call] = await db(calls_of, run.id)
    assert call.status == CallStatus.SUCCEEDED and call.result == "waited 1 s"


async def test_approval_is_per_tool_and_arguments_are_checked_against_the_servers_schema(
        worker, session, user, mcp_config, http_server):
    url, _, _ = http_server
    mcp_config({"search": {"url": url, "approval": "auto",
                           "tools": {"repeat": {"approval": "ask"}, "fail": {"approval": "deny"}}}})
    run = await start(session, user, call_script(
        ("mcp__search__repeat", {"text": "ab", "times": 2}),
        ("mcp__search__repeat", {"text": "ab", "times": "two"}),
        ("mcp__search__fail", {"message": "no"}),
        ("mcp__search__listing", {}),
    ))
    approval = await wait_until(lambda: pending_approval(run.id), timeout=TIMEOUT, what="the approval")
    assert approval.function_call.name == "mcp__search__repeat"
    assert (await db(approval_decide, approval_id=approval.id, user=user, decision="approve")).accepted
    run = await wait_terminal(run.id, timeout=TIMEOUT)
    asked, invalid, denied, auto = await db(calls_of, run.id)
    assert run.outcome == "completed"
    assert (asked.status, asked.result) == (CallStatus.SUCCEEDED, "abab")
    assert invalid.status == CallStatus.FAILED
    assert invalid.result == "error: invalid arguments: argument 'times' must be of type integer"
    assert (denied.status, denied.result) == (CallStatus.DENIED, "denied by policy")
    assert auto.status == CallStatus.SUCCEEDED


async def test_an_error_result_is_an_error_the_model_reads(worker, session, user, mcp_config, http_server):
    url, _, _ = http_server
    mcp_config({"search": {"url": url, "approval": "auto"}})
    run = await start(session, user, call_script(("mcp__search__fail", {"message": "the disk is on fire"})))
    run = await wait_terminal(run.id, timeout=TIMEOUT)
    [call] = await db(calls_of, run.id)
    assert run.outcome == "completed" and call.status == CallStatus.FAILED
    assert call.result.startswith("error: ") and "the disk is on fire" in call.result


async def test_a_server_that_never_starts_leaves_the_other_tools(worker, session, user, mcp_config, http_server):
    url, _, _ = http_server
    mcp_config({"broken": {"command": "/nonexistent/mcp-server", "approval": "auto"},
                "search": {"url": url, "approval": "auto"}})
    run = await start(session, user, call_script(("mcp__broken__anything", {}), ("mcp__search__repeat", {"text": "z", "times": 2})))
    run = await wait_terminal(run.id, timeout=TIMEOUT)
    broken, working = await db(calls_of, run.id)
    assert run.outcome == "completed"
    assert broken.status == CallStatus.FAILED and broken.result == "error: unknown tool 'mcp__broken__anything'"
    assert working.status == CallStatus.SUCCEEDED and working.result == "zz"
    assert "did not start" in get_manager().connection("broken", session.id).reason
    health = (await db(Client().get, "/healthz")).json()  # a warning, not a reason to be unhealthy
    assert health["mcp"]["servers"] == ["broken", "search"]
    assert health["mcp"]["connections"]["search"] == {"ok": True}
    [warning] = health["mcp"]["warnings"]
    assert warning.startswith("broken: the server did not start")


async def test_tools_a_server_adds_are_offered_from_the_next_turn(worker, session, user, mcp_config, stdio_python):
    mcp_config({"files": stdio_server(stdio_python, approval="auto")})
    run = await start(session, user, script(
        {"calls": [{"name": "mcp__files__extra", "arguments": {}}]},
        {"calls": [{"name": "mcp__files__grow", "arguments": {}}]},
        {"calls": [{"name": "mcp__files__extra", "arguments": {}}]},
        {"text": "done"},
    ))
    run = await wait_terminal(run.id, timeout=TIMEOUT)
    before, grow, after = await db(calls_of, run.id)
    assert run.outcome == "completed"
    assert (before.status, before.result) == (CallStatus.FAILED, "error: unknown tool 'mcp__files__extra'")
    assert (grow.status, after.status, after.result) == (CallStatus.SUCCEEDED, CallStatus.SUCCEEDED, "extra!")


async def test_a_server_that_dies_mid_call_fails_the_call_and_the_run_goes_on(worker, session, user, mcp_config,
                                                                            stdio_python):
    mcp_config({"files": stdio_server(stdio_python, approval="auto")})
    run = await start(session, user, call_script(("mcp__files__crash", {"tag": "c"}), ("clock", {})))
    run = await wait_terminal(run.id, timeout=TIMEOUT)
    crashed, clock = await db(calls_of, run.id)
    assert run.outcome == "completed"
    assert crashed.status == CallStatus.FAILED and "stopped during the call" in crashed.result
    assert clock.status == CallStatus.SUCCEEDED


async def test_two_sessions_each_have_their_own_stdio_server_in_their_own_workspace(
        worker, session, user, make_user, mcp_config, stdio_python, settings):
    settings.HARNESS_MCP_IDLE_SECONDS = 0.5
    mcp_config({"files": stdio_server(stdio_python, approval="auto")})
    bob = await db(make_user, "bob")
    bob_session = await db(session_create, owner=bob, title="bob's")
    for owner, owned, name in ((user, session, "alice.txt"), (bob, bob_session, "bob.txt")):
        workspace = session_workspace(owned.id)
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_text(name)
    runs = [await start(session, user, call_script(("mcp__files__listing", {}))),
            await start(bob_session, bob, call_script(("mcp__files__listing", {})))]
    alice_run, bob_run = [await wait_terminal(run.id, timeout=TIMEOUT) for run in runs]
    [alice_call], [bob_call] = await db(calls_of, alice_run.id), await db(calls_of, bob_run.id)
    assert alice_call.result == "alice.txt" and bob_call.result == "bob.txt"

    manager = get_manager()
    servers = [manager.per_session[(str(owned.id), "files")] for owned in (session, bob_session)]
    assert servers[0].process.sandboxed is not servers[1].process.sandboxed
    # Neither session has a live run: both servers are stopped once idle.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    # (Forgotten by the manager first, so a run starting meanwhile gets a server of its own; then stopped.)
    while manager.per_session or any(server.process.sandboxed.process.returncode is None for server in servers):
        assert loop.time() < deadline, "idle stdio servers were not stopped"
        await asyncio.sleep(0.05)
    assert all(server.retired for server in servers)


@pytest.mark.parametrize("then", ["answer", "exit"])
async def test_a_stop_that_crosses_the_servers_answer_or_end_says_the_call_may_have_partly_run(
        worker, session, user, mcp_config, stdio_python, monkeypatch, then):
    """`ServerConnection.call` says "server notified" when the stop's cancellation reaches a call still in
    flight, and "may have partly run" when the server had already answered or was gone (the call's future
    done, or the connection lost) as it came. To force the second branch, the engine's cancellation of the
    tool (`cancel_until_done`, which a stop's preemption calls) is held until the real server has answered
    (`then="answer"`) or exited mid-call (`"exit"`), and lands in the same loop iteration: from the done
    callback of the task awaiting `call_tool` (or of the connection's owner, when the server's end closes
    the connection first) — before the task awaiting the call has seen the answer."""
    mcp_config({"files": stdio_server(stdio_python, approval="auto")})
    workspace = session_workspace(session.id)
    real_cancel_until_done = context_module.cancel_until_done
    landed: list[str] = []

    async def cancel_as_the_call_ends(task: asyncio.Future, *, grace: float) -> bool:
        [call] = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "ClientSession.call_tool"]
        owner = get_manager().per_session[(str(session.id), "files")]._owner
        ended = asyncio.get_running_loop().create_future()

        def cancel_now(what: str):
            def callback(_) -> None:
                if not ended.done():
                    landed.append(what)
                    task.cancel()
                    ended.set_result(None)
            return callback

        call.add_done_callback(cancel_now("the call ended"))
        owner.add_done_callback(cancel_now("the connection ended"))
        (workspace / "release-p1").write_text("go")
        await ended
        return await real_cancel_until_done(task, grace=grace)

    monkeypatch.setattr(context_module, "cancel_until_done", cancel_as_the_call_ends)
    run = await stop_mid_call(session, user, workspace / "started-p1", "mcp__files__hold", {"tag": "p1", "then": then})
    assert landed, "the cancellation was never forced"
    assert run.outcome == "stopped"
    [call] = await db(calls_of, run.id)
    assert call.status == CallStatus.CANCELLED
    assert call.result == "cancelled: run stopped by alice (may have partly run)"
    assert run.receipt["cancelled_calls"] == []
    assert run.receipt["partly_run_calls"] == [
        {"call_id": "call_t1_0", "name": "mcp__files__hold", "status": "cancelled", "note": "may have partly run"}]
