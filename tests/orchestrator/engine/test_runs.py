"""Whole runs driven by the real worker on the embedded default (SQLite + in-memory layer + scripted model).

Preemption tests stop runs whose natural end is 25-30 s away and require `stopped` within a 5 s deadline:
that proves the stream or tool was interrupted, without timing anything (speed lives in bench/).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from channels.layers import get_channel_layer
from django.utils import timezone

from orchestrator import events
from orchestrator.models import Approval, CallStatus, FunctionCall, Message, Run, SteeringMessage
from orchestrator import wakeups
from orchestrator.services.approvals import approval_decide
from orchestrator.services.runs import run_steer, run_stop
from orchestrator.services.sessions import session_create
from tests.conftest import running_worker
from tests.helpers import (
    db,
    script,
    shell_script,
    start,
    start_parked_on_shell,
    wait_for_state,
    wait_terminal,
    wait_until,
)
from devtools.processes import marker, wait_no_live_processes, wait_sleeping
from tests.tools import side_effects

pytestmark = pytest.mark.django_db(transaction=True)

LONG_STREAM = {"words": 5000, "delay_ms": 5}  # ~25 s if nobody stops it


def transcript(session_id) -> list[tuple[str, str, str]]:
    return [(m.role, m.status, m.text) for m in Message.objects.filter(session_id=session_id).order_by("id")]


def workspace(settings, session) -> Path:
    return Path(settings.HARNESS_WORKSPACE_ROOT) / str(session.id)


async def stop(session, user, **kwargs):
    return await db(run_stop, session_id=session.id, requested_by=user, **kwargs)


def streamed_text(run_id) -> str:
    message = Message.objects.filter(run_id=run_id, role="assistant").order_by("-id").first()
    return message.text if message else ""


def call_status(run_id, name: str) -> str | None:
    call = FunctionCall.objects.filter(run_id=run_id, name=name).first()
    return call.status if call else None


# --- the happy paths ----------------------------------------------------------------------------------


async def test_demo_run_calls_the_calculator_and_completes(worker, session, user):
    run = await start(session, user, "what is 12 * 7?")
    run = await wait_terminal(run.id)
    assert (run.state, run.outcome, run.turn_count) == ("completed", "completed", 2)
    messages = await db(transcript, session.id)
    assert [role for role, _, _ in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[2][2] == "84" and "84" in messages[3][2]
    assert run.receipt["completed_calls"] == [{"call_id": "call_t1_0", "name": "calculator", "status": "succeeded"}]
    assert run.executor_id == "" and run.finished_at is not None


async def test_approved_call_runs_and_the_run_continues(worker, session, user, settings):
    run, approval = await start_parked_on_shell(session, user, "echo hi > out.txt; cat out.txt", {"text": "done"})
    # Parked: the run waits on a person with no executor (and no lease) held.
    await wait_until(lambda: Run.objects.filter(pk=run.id, state="awaiting_approval", executor_id="").exists(),
                     what="the run to park")
    await wait_until(lambda: str(run.id) not in worker.tasks, what="the executor to exit")
    assert (await db(approval_decide, approval_id=approval.id, user=user, decision="approve")).accepted
    run = await wait_terminal(run.id)
    assert run.outcome == "completed"
    call = await db(FunctionCall.objects.get, run=run)
    assert (call.status, call.result) == ("succeeded", "exit code 0\nhi\n")
    assert (workspace(settings, session) / "out.txt").read_text() == "hi\n"


async def test_denied_call_gives_the_model_a_denial_and_never_runs(worker, session, user, settings):
    run, approval = await start_parked_on_shell(session, user, "touch x", {"text": "ok"})
    assert (await db(approval_decide, approval_id=approval.id, user=user, decision="deny")).accepted
    run = await wait_terminal(run.id)
    call = await db(FunctionCall.objects.get, run=run)
    assert (run.outcome, call.status, call.result) == ("completed", "denied", "denied by alice")
    assert not (workspace(settings, session) / "x").exists()


async def test_expired_approval_denies_the_call_and_the_run_goes_on(worker, session, user, settings):
    settings.HARNESS_APPROVAL_TTL_SECONDS = 0.2
    settings.HARNESS_RECOVERY_INTERVAL_SECONDS = 0.05
    run = await start(session, user, shell_script("true", {"text": "ok"}))
    run = await wait_terminal(run.id)
    approval = await db(Approval.objects.get, run=run)
    call = await db(FunctionCall.objects.get, run=run)
    assert (run.outcome, approval.status, call.status) == ("completed", "expired", "denied")
    assert call.result == "denied: the approval request expired"


async def test_steering_is_applied_as_a_user_message_and_a_new_turn(worker, session, user):
    run = await start(session, user, script({"text": "one two three four five six", "delay_ms": 50}, {"text": "steered"}))
    await wait_for_state(run.id, "assistant_streaming")
    steering = await db(run_steer, session_id=session.id, user=user, text="and also this")
    run = await wait_terminal(run.id)
    assert (run.outcome, run.turn_count) == ("completed", 2)
    roles_texts = [(r, t) for r, _, t in await db(transcript, session.id)]
    assert roles_texts[1:] == [("assistant", "one two three four five six"), ("user", "and also this"),
                               ("assistant", "steered")]
    assert (await db(SteeringMessage.objects.get, pk=steering.pk)).status == "applied"


async def test_max_turns_ends_the_run_with_a_visible_message(worker, session, user, settings):
    settings.HARNESS_MAX_TURNS = 2
    clock = {"calls": [{"name": "clock", "arguments": {}}]}
    run = await start(session, user, script(clock, clock, clock, clock))
    run = await wait_terminal(run.id)
    assert (run.outcome, run.stop_reason, run.turn_count) == ("stopped", "max_turns", 2)
    last = (await db(transcript, session.id))[-1]
    assert last == ("assistant", "complete", "stopped: max turns (2) reached")


async def test_invalid_script_fails_the_run_with_a_clear_message(worker, session, user):
    run = await start(session, user, 'script:{"turns": [{"txet": "typo"}]}')
    run = await wait_terminal(run.id)
    assert run.outcome == "failed" and run.error == "invalid script: turns[0] has unknown keys: txet"
    notices = [t for r, _, t in await db(transcript, session.id) if r == "system"]
    assert notices == ["Run failed: invalid script: turns[0] has unknown keys: txet"]


async def test_model_error_fails_the_run_and_keeps_earlier_output(worker, session, user):
    run = await start(session, user, script({"text": "first answer", "calls": [{"name": "clock", "arguments": {}}]},
                                             {"error": "boom"}))
    run = await wait_terminal(run.id)
    assert (run.outcome, run.error) == ("failed", "model error: boom")
    messages = await db(transcript, session.id)
    assert ("assistant", "complete", "first answer") in messages
    assert messages[-1] == ("system", "complete", "Run failed: model error: boom")


async def test_fifty_concurrent_runs_in_one_process_all_complete(worker, user):
    sessions = [await db(session_create, owner=user, title=f"s{i}") for i in range(50)]
    body = script({"text": "thinking about it", "delay_ms": 5, "calls": [{"name": "clock", "arguments": {}}]},
                  {"words": 40, "delay_ms": 2})
    started = await asyncio.gather(*(start(s, user, body) for s in sessions))
    finished = await asyncio.gather(*(wait_terminal(r.id, timeout=60) for r in started))
    assert [r.outcome for r in finished] == ["completed"] * 50
    assert all(r.turn_count == 2 for r in finished)


# --- stop, preempting whatever is in flight -----------------------------------------------------------


async def test_stop_mid_stream_keeps_the_partial_answer(worker, session, user):
    run = await start(session, user, script(LONG_STREAM))
    await wait_until(lambda: len(streamed_text(run.id)) > 0, what="a checkpoint of streamed text")
    result = await stop(session, user)
    assert (result.accepted, result.prior_state) == (True, "assistant_streaming")
    run = await wait_terminal(run.id, timeout=5)
    assert run.outcome == "stopped"
    (message,) = await db(lambda: list(Message.objects.filter(run=run, role="assistant")))
    assert message.status == "stopped"
    assert 0 < len(message.text.split()) < 5000
    assert message.output_tokens > 0 and message.usage_estimated
    assert run.receipt["stop"]["latency_ms"] is not None and run.stop_acknowledged_at is not None


async def test_stop_mid_sleep_cancels_the_tool(worker, session, user):
    run = await start(session, user, script({"calls": [{"name": "sleep", "arguments": {"seconds": 30}}]}))
    await wait_until(lambda: call_status(run.id, "sleep") == "running", what="sleep to start")
    await stop(session, user)
    run = await wait_terminal(run.id, timeout=5)
    call = await db(FunctionCall.objects.get, run=run)
    assert (run.outcome, call.status, call.result) == ("stopped", "cancelled", "cancelled: run stopped by alice")
    assert run.receipt["partly_run_calls"] == [{"call_id": "call_t1_0", "name": "sleep", "status": "cancelled"}]


async def test_stop_mid_shell_kills_the_command_and_its_children(worker, session, user, settings):
    tag = marker()
    command = f"sleep {tag} & sleep {tag}; wait"
    run, approval = await start_parked_on_shell(session, user, command)
    await db(approval_decide, approval_id=approval.id, user=user, decision="approve")
    await wait_sleeping(tag)  # running, 30 s from its end: the kill below is what ends it
    await stop(session, user)
    run = await wait_terminal(run.id, timeout=5)
    assert run.outcome == "stopped"
    assert await db(call_status, run.id, "shell") == "cancelled"
    await wait_no_live_processes(tag)


async def test_stop_while_parked_on_an_approval(worker, session, user):
    run, approval = await start_parked_on_shell(session, user, "true")
    result = await stop(session, user)
    assert result.prior_state == "awaiting_approval"
    run = await wait_terminal(run.id, timeout=5)
    approval = await db(Approval.objects.get, pk=approval.pk)
    call = await db(FunctionCall.objects.get, run=run)
    assert (run.outcome, approval.status, approval.reason) == ("stopped", "swept", "run_stopped")
    assert (call.status, call.result) == ("cancelled", "cancelled: run stopped by alice")
    assert run.receipt["cancelled_calls"] == [{"call_id": "call_t1_0", "name": "shell", "status": "cancelled"}]


async def test_a_late_approval_after_the_sweep_never_dispatches(worker, session, user, settings):
    command = "echo ran >> side_effects.log"
    run, approval = await start_parked_on_shell(session, user, command)
    await stop(session, user)
    late = await db(approval_decide, approval_id=approval.id, user=user, decision="approve")
    assert late.as_dict() == {"accepted": False, "reason": "approval_closed"}
    run = await wait_terminal(run.id, timeout=5)
    assert run.outcome == "stopped"
    assert await db(call_status, run.id, "shell") == "cancelled"
    assert side_effects(workspace(settings, session)) == []


async def test_a_stop_during_provisioning_is_not_lost(session, user):
    run = await start(session, user, script({"text": "never said"}))
    assert (await stop(session, user)).prior_state == "provisioning"
    async with running_worker():  # the executor starts only now, after the stop landed
        run = await wait_terminal(run.id, timeout=5)
    assert (run.outcome, run.turn_count) == ("stopped", 0)
    assert [r for r, _, _ in await db(transcript, session.id)] == ["user"]  # no model call was made


async def test_stop_lands_through_the_database_when_the_wake_up_is_lost(worker, session, user, monkeypatch):
    async def lost(*args, **kwargs):
        """The wake-up message is lost on the way."""

    monkeypatch.setattr(wakeups, "send_wakeup", lost)
    run = await start(session, user, script({"calls": [{"name": "sleep", "arguments": {"seconds": 30}}]}))
    await wait_until(lambda: call_status(run.id, "sleep") == "running", what="sleep to start")
    await stop(session, user)
    run = await wait_terminal(run.id, timeout=5)
    assert (run.outcome, await db(call_status, run.id, "sleep")) == ("stopped", "cancelled")


async def test_a_must_finish_tool_completes_before_the_run_stops(worker, session, user):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.session_group(session.id), channel)
    run = await start(session, user, script({"calls": [{"name": "finishing", "arguments": {"seconds": 1}}]}))
    await wait_until(lambda: call_status(run.id, "finishing") == "running", what="the tool to start")
    await stop(session, user)
    run = await wait_terminal(run.id, timeout=5)
    call = await db(FunctionCall.objects.get, run=run)
    assert (run.outcome, call.status, call.result) == ("stopped", "succeeded", "finished")
    seen = []
    while (message := await asyncio.wait_for(layer.receive(channel), 5))["event"]["type"] != "run.finished":
        seen.append(message["event"]["type"])
    assert "function.finishing" in seen


async def test_a_new_run_after_a_stop_proceeds_normally(worker, session, user):
    first = await start(session, user, script(LONG_STREAM))
    await wait_for_state(first.id, "assistant_streaming")
    await stop(session, user)
    await wait_terminal(first.id, timeout=5)
    second = await start(session, user, "what is 2 + 3?")
    second = await wait_terminal(second.id)
    assert (second.outcome, second.turn_count, second.stop_requested_at) == ("completed", 2, None)


# --- a worker dies ------------------------------------------------------------------------------------


async def kill_executor(pool, run_id) -> None:
    """What SIGKILL leaves behind: no task, and a lease still naming the dead worker until it lapses."""
    task = pool.tasks[str(run_id)]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await db(Run.objects.filter(pk=run_id).update, executor_id="dead-worker",
             lease_expires_at=timezone.now() - timedelta(seconds=1))


async def test_worker_killed_mid_tool_the_run_resumes_and_never_reruns_the_call(worker, session, user, settings):
    run = await start(session, user, script({"calls": [{"name": "side_effect", "arguments": {"seconds": 30}}]},
                                             {"text": "after the crash"}))
    await wait_until(lambda: side_effects(workspace(settings, session)) == ["effect"], what="the tool to run")
    await kill_executor(worker, run.id)
    assert str(run.id) in await worker.recover_once()
    run = await wait_terminal(run.id)
    call = await db(FunctionCall.objects.get, run=run)
    assert (run.outcome, call.status) == ("completed", "interrupted")
    assert "may have partly run" in call.result
    assert side_effects(workspace(settings, session)) == ["effect"]  # ran once, never again
    assert run.receipt["partly_run_calls"] == [{"call_id": "call_t1_0", "name": "side_effect", "status": "interrupted"}]


async def test_worker_killed_mid_stream_keeps_the_partial_text_and_asks_again(worker, session, user):
    run = await start(session, user, script({"words": 400, "delay_ms": 5}))
    await wait_until(lambda: len(streamed_text(run.id)) > 0, what="a checkpoint")
    await kill_executor(worker, run.id)
    partial = await db(streamed_text, run.id)
    await worker.recover_once()
    run = await wait_terminal(run.id, timeout=15)
    assert run.outcome == "completed"
    assistant = await db(lambda: list(Message.objects.filter(run=run, role="assistant").order_by("id")))
    assert [(m.status, m.text) for m in assistant[:1]] == [("error", partial)]
    assert assistant[1].status == "complete" and len(assistant[1].text.split()) == 400


async def test_a_run_nobody_drives_is_picked_up_by_recovery(session, user):
    # A start whose wake-up was lost: only the database knows about the run.
    run = await start(session, user, "hello")
    from channels.layers import channel_layers

    channel_layers.backends = {}  # drop the queued wake-up with the layer
    async with running_worker():
        run = await wait_terminal(run.id)
    assert run.outcome == "completed"


# --- what clients hear ------------------------------------------------------------------------------


async def test_events_tell_the_story_and_finish_only_after_the_transcript_is_saved(worker, session, user):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.session_group(session.id), channel)
    run = await start(session, user, script({"text": "alpha beta gamma delta", "delay_ms": 20}))
    received = []
    while True:
        event = (await asyncio.wait_for(layer.receive(channel), 10))["event"]
        received.append(event)
        if event["type"] == "run.finished":
            finished_run = await db(Run.objects.get, pk=run.id)
            saved = await db(transcript, session.id)
            break
    assert finished_run.state == "completed" and saved[-1] == ("assistant", "complete", "alpha beta gamma delta")
    states = [e["state"] for e in received if e["type"] == "run.state"]
    assert states == ["provisioning", "awaiting_assistant", "assistant_streaming", "assistant_finished",
                      "steering_check", "tearing_down", "completed"]
    deltas = [e for e in received if e["type"] == "message.delta"]
    rebuilt = ""
    for delta in deltas:
        assert delta["offset"] == len(rebuilt)
        rebuilt += delta["text"]
    assert rebuilt == "alpha beta gamma delta"
    assert received[-1]["receipt"]["outcome"] == "completed"


async def test_a_run_that_keeps_killing_its_workers_is_finalized_not_resumed_forever(worker, session, user, settings):
    settings.HARNESS_MAX_RESUMES = 2
    run = await start(session, user, script({"calls": [{"name": "side_effect", "arguments": {"seconds": 30}}]}))
    await wait_until(lambda: side_effects(workspace(settings, session)) == ["effect"], what="the tool to run")
    await kill_executor(worker, run.id)
    await worker.recover_once()  # takeover 1 of 2 allowed: resumed
    resumed = await wait_terminal(run.id)
    assert (resumed.outcome, resumed.resume_count) == ("completed", 1)

    second = await start(session, user, script({"calls": [{"name": "side_effect", "arguments": {"seconds": 30}}]}))
    # Killed mid-tool: once the tool has really run ("running" is committed just before it starts).
    await wait_until(lambda: len(side_effects(workspace(settings, session))) == 2, what="the tool to run")
    await kill_executor(worker, second.id)
    await db(Run.objects.filter(pk=second.id).update, resume_count=2)  # it already crashed twice before
    await worker.recover_once()
    second = await wait_terminal(second.id)
    assert (second.outcome, second.resume_count) == ("failed", 3)
    assert second.error == "the run was interrupted 3 times (its worker kept stopping); not resuming it again"
    call = await db(FunctionCall.objects.get, run=second)
    assert call.status == "interrupted"  # closed by teardown, never re-run
    assert side_effects(workspace(settings, session)) == ["effect", "effect"]  # once per run


async def test_a_worker_shutting_down_mid_stream_saves_what_was_streamed(worker, session, user, settings):
    settings.HARNESS_CHECKPOINT_SECONDS = 3600  # no periodic checkpoint: only the shutdown can save the text
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.session_group(session.id), channel)
    run = await start(session, user, script({"words": 2000, "delay_ms": 5}))
    while (await asyncio.wait_for(layer.receive(channel), 10))["event"]["type"] != "message.delta":
        pass  # clients have now seen streamed text
    assert await db(streamed_text, run.id) == ""  # and none of it is in the database yet
    task = worker.tasks[str(run.id)]
    task.cancel()  # what a worker's shutdown does to its executors
    await asyncio.gather(task, return_exceptions=True)
    saved = await db(streamed_text, run.id)
    assert saved and 0 < len(saved.split()) < 2000
    assert (await db(Run.objects.get, pk=run.id)).state == "assistant_streaming"  # resumable, not ended


async def test_a_stop_does_not_wait_for_work_that_ignores_cancellation(worker, session, user, monkeypatch):
    """If a provider swallowed CancelledError, the stop still ends the run (within the grace period)."""
    from orchestrator.providers import scripted

    real_play = scripted._play

    async def stubborn_play(turn, request):
        try:
            async for event in real_play(turn, request):
                yield event
        except asyncio.CancelledError:
            await asyncio.sleep(30)  # a badly behaved library: keeps going after being cancelled
            raise

    monkeypatch.setattr(scripted, "_play", stubborn_play)
    run = await start(session, user, script(LONG_STREAM))
    await wait_until(lambda: len(streamed_text(run.id)) > 0, what="streamed text")
    await stop(session, user)
    run = await wait_terminal(run.id, timeout=5)  # not 30 s: the stop went ahead without the stuck work
    assert run.outcome == "stopped"


async def test_the_first_delta_of_an_answer_is_sent_at_once(worker, session, user, settings):
    """Coalescing gathers what follows the first delta, never the first itself: with a coalescing interval far
    longer than the answer, the first event still carries only the first word."""
    settings.HARNESS_DELTA_COALESCE_SECONDS = 60
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.session_group(session.id), channel)
    run = await start(session, user, script({"text": "one two three four five", "delay_ms": 100}))
    deltas = []
    while (message := await asyncio.wait_for(layer.receive(channel), 10))["event"]["type"] != "run.finished":
        if message["event"]["type"] == "message.delta":
            deltas.append(message["event"]["text"])
    assert (await wait_terminal(run.id)).outcome == "completed"
    assert deltas[0].strip() == "one"  # at once, not after 60 s (or at the end) with the rest
    assert "".join(deltas).split() == ["one", "two", "three", "four", "five"]  # and the rest follows, whole
