"""Whole runs whose approved shell calls try to escape or to exhaust the worker: two users on one server,
the real worker, the real sandbox.

Bob's approved commands cannot read Alice's workspace; a fork bomb and `yes` in Bob's run are contained
(the worker's memory stays within the output cap, the event loop keeps serving) while Alice's run keeps
streaming; a stop in the middle of a command leaves no process of it alive.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from orchestrator.engine.workspace import session_workspace
from orchestrator.models import CallStatus, FunctionCall, Message, Run
from orchestrator.services.approvals import approval_decide
from orchestrator.services.runs import run_stop
from orchestrator.services.sessions import session_create
from tests.helpers import db, script, start, start_parked_on_shell, wait_for_state, wait_terminal, wait_until
from devtools.processes import live_processes, marker, rss_bytes, wait_no_live_processes, wait_sleeping

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "alice-secret-b81d"


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def bob_session(bob):
    return session_create(owner=bob, title="bob's session")


async def start_approved_shell(session, user, command: str, *then: dict) -> Run:
    """Start a run whose model asks to run `command` in the shell, and approve the call once it waits on it."""
    run, approval = await start_parked_on_shell(session, user, command, *then)
    assert (await db(approval_decide, approval_id=approval.id, user=user, decision="approve")).accepted
    return run


def call_of(run_id) -> FunctionCall:
    return FunctionCall.objects.get(run_id=run_id, name="shell")


async def test_bobs_approved_shell_cannot_read_alices_files(worker, session, bob, bob_session):
    alice_workspace = session_workspace(session.id)
    alice_workspace.mkdir(parents=True)
    (alice_workspace / "secret.txt").write_text(SECRET, encoding="utf-8")
    bob_workspace = session_workspace(bob_session.id)
    bob_workspace.mkdir(parents=True)
    command = f"cat ../{session.id}/secret.txt; cat {alice_workspace}/secret.txt; ls .."
    # The same command as a plain process of the server, as it ran before the sandbox:
    plain = subprocess.run(["/bin/sh", "-c", command], cwd=bob_workspace, capture_output=True, text=True)
    assert SECRET in plain.stdout and str(session.id) in plain.stdout

    run = await start_approved_shell(bob_session, bob, command, {"text": "done"})
    run = await wait_terminal(run.id)
    call = await db(call_of, run.id)
    assert run.outcome == "completed" and call.status == CallStatus.SUCCEEDED
    assert SECRET not in call.result and f"\n{session.id}\n" not in call.result
    assert "No such file or directory" in call.result


async def wait_no_sandbox_user_processes(timeout: float = 20.0) -> None:
    import psutil

    from orchestrator.sandbox import sandbox_uid

    if sandbox_uid() is None:  # not root: the sandbox runs as the server's own user, whose processes these are
        return
    uid = sandbox_uid()[0]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(p.info["uids"] and p.info["uids"].real == uid for p in psutil.process_iter(["uids"])):
        assert loop.time() < deadline, "processes of the sandbox's user are still running"
        await asyncio.sleep(0.05)


async def test_a_fork_bomb_and_yes_are_contained_while_another_run_streams(worker, session, user, bob,
                                                                           bob_session, settings):
    settings.HARNESS_SANDBOX_PROCESSES = 64
    settings.HARNESS_TOOL_OUTPUT_LIMIT_BYTES = 64 * 1024
    settings.HARNESS_SHELL_TIMEOUT_SECONDS = 5
    # `yes` first: once the bomb has taken every process the limit allows, nothing more can start. The bomb
    # goes off in a subshell: the top shell forks nothing after it, since a non-interactive sh whose own fork
    # fails exits at once, which would end the sandbox (and `yes`) before the timeout.
    command = "yes & (bomb() { bomb | bomb & }; bomb) 2>/dev/null; wait"
    # The process limit counts every process of the sandbox's user: processes of earlier tests' sandboxes
    # still being reaped would leave `yes` no room to start. Begin once there are none.
    await wait_no_sandbox_user_processes()
    baseline, peak = rss_bytes(), 0

    async def sample_memory() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_bytes())
            await asyncio.sleep(0.02)

    sampler = asyncio.ensure_future(sample_memory())
    try:
        bobs = await start_approved_shell(bob_session, bob, command, {"text": "bob goes on"})
        await wait_until(lambda: call_of(bobs.id).status == CallStatus.RUNNING, what="bob's command to run")
        alices = await start(session, user, script({"words": 60, "delay_ms": 10}))
        alices = await wait_terminal(alices.id)
        # Alice's answer streamed to its end while Bob's command was still running.
        assert alices.outcome == "completed"
        assert (await db(call_of, bobs.id)).status == CallStatus.RUNNING
        bobs = await wait_terminal(bobs.id)
    finally:
        sampler.cancel()
    call = await db(call_of, bobs.id)
    assert bobs.outcome == "completed" and call.status == CallStatus.FAILED
    assert call.result.startswith("error: timed out after 5 s\ny\ny\n")
    dropped = int(call.result.rsplit("(truncated: ", 1)[1].split(" ")[0])
    # `yes` wrote more than twice what the worker's memory may grow by: had it been kept, it would have grown.
    assert dropped > 64 * 1024 * 1024
    assert peak - baseline < 32 * 1024 * 1024, (peak - baseline, dropped)
    last = await db(lambda: Message.objects.filter(run_id=bobs.id, role="assistant").order_by("-id").first())
    assert last.text == "bob goes on"  # the run carried on after the contained command


async def test_a_stop_mid_command_leaves_no_process_alive(worker, session, user):
    tag = marker()
    command = f"sleep {tag} & sleep {tag}; wait"
    run = await start_approved_shell(session, user, command, {"text": "never"})
    await wait_sleeping(tag)
    assert len(live_processes(tag)) >= 3  # bubblewrap, the shell, two sleeps: 30 s from their natural end
    result = await db(run_stop, session_id=session.id, requested_by=user)
    assert result.accepted
    run = await wait_terminal(run.id)
    assert run.outcome == "stopped"
    assert (await db(call_of, run.id)).status == CallStatus.CANCELLED
    await wait_no_live_processes(tag)


async def test_a_stop_as_the_command_starts_leaves_no_process_alive(worker, session, user):
    """A stop while the command is being set up (the call is `running`, the sandbox not yet started)."""
    tag = marker()
    command = f"sleep {tag}"
    run = await start_approved_shell(session, user, command, {"text": "never"})
    await wait_for_state(run.id, "function_execute")
    await db(run_stop, session_id=session.id, requested_by=user)
    run = await wait_terminal(run.id)
    assert run.outcome == "stopped"
    await wait_no_live_processes(tag)
