"""A run's first model request is sent while the steps before it commit (orchestrator/engine/speculation.py),
through the real worker and the real OpenAI SDK against the fake Chat Completions server.

Provisioning (or the lease take) is held at a gate here, so "before the steps commit" is observed rather than
raced: the request reaches the server while the run is still `provisioning` with no answer opened (and, when
the start command sent it, before any executor holds the run). Once the gate opens, the run goes on with that
same request (one request in all); a stop that landed meanwhile closes it, burns no turn and opens no answer.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from devtools.fakes.openai_wire import ChatChunks, text_answer
from orchestrator import wakeups
from orchestrator.engine import pool as pool_module
from orchestrator.engine.executor import RunExecutor
from orchestrator.engine.step import HANDLERS
from orchestrator.models import Message, Run, RunState
from orchestrator.services.runs import run_stop
from tests.conftest import running_worker
from tests.helpers import db, start, wait_terminal
from tests.orchestrator.providers.test_openai_chat import openai_model, server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def provisioning_gate(monkeypatch) -> asyncio.Event:
    """Provisioning waits until the returned event is set."""
    gate, provisioning = asyncio.Event(), HANDLERS[RunState.PROVISIONING]

    async def held(ctx, run):
        await gate.wait()
        return await provisioning(ctx, run)

    monkeypatch.setitem(HANDLERS, RunState.PROVISIONING, held)
    return gate


def _state(run_id) -> tuple[str, int, list[tuple[str, str]]]:
    run = Run.objects.get(pk=run_id)
    return run.state, run.turn_count, [(m.role, m.text) for m in Message.objects.filter(run=run).order_by("id")]


async def test_the_first_request_is_on_the_wire_before_provisioning_commits(server, openai_model, worker,  # noqa: F811
                                                                            session, user, provisioning_gate):
    server.push(text_answer("Hello there.", pieces=3))
    run = await start(session, user, "hi")

    request = await asyncio.to_thread(server.wait_request, 0, 10.0)
    assert request is not None and request.body["messages"] == [{"role": "user", "content": "hi"}]
    assert await db(_state, run.id) == ("provisioning", 0, [("user", "hi")])

    provisioning_gate.set()
    run = await wait_terminal(run.id)
    assert (run.outcome, run.turn_count) == ("completed", 1)
    assert (await db(_state, run.id))[2] == [("user", "hi"), ("assistant", "Hello there.")]
    assert len(server.requests) == 1  # the speculated request was the run's model call


@pytest.mark.parametrize("held", ["provisioning_gate", "lease_gate"])
async def test_a_stop_before_the_model_call_closes_the_speculated_request(server, openai_model, worker,  # noqa: F811
                                                                          session, user, held, request):
    """Held before provisioning commits, or before the executor has even claimed the start command's request."""
    gate = request.getfixturevalue(held)
    words = [f"word{i} " for i in range(3000)]  # a minute of answer if nobody closes it
    server.push(ChatChunks().role().text(*words).finish("stop").usage(50, 3000).sse(delay=0.02))
    run = await start(session, user, "tell me a long story")
    assert await asyncio.to_thread(server.wait_request, 0, 10.0) is not None

    assert (await db(run_stop, session_id=session.id, requested_by=user)).accepted
    gate.set()
    run = await wait_terminal(run.id)

    assert await server.await_disconnect(timeout=5) is not None
    assert (run.outcome, run.turn_count) == ("stopped", 0)  # no turn burnt, no answer opened
    assert [role for role, _ in (await db(_state, run.id))[2]] == ["user"]
    assert len(server.requests) == 1


# --- sent by the start command itself, when this process runs the worker ----------------------------------


@pytest.fixture
def lease_gate(monkeypatch) -> threading.Event:
    """Executors wait (on the engine's database thread) before they take a run's lease until the returned
    event is set."""
    gate, take = threading.Event(), RunExecutor._take

    def held(self, *args, **kwargs):
        assert gate.wait(10), "the lease gate was never opened"
        return take(self, *args, **kwargs)

    monkeypatch.setattr(RunExecutor, "_take", held)
    return gate


def _lease(run_id) -> tuple[str, str]:
    run = Run.objects.get(pk=run_id)
    return run.state, run.executor_id


async def test_the_start_command_sends_the_first_request_before_any_executor_holds_the_run(
        server, openai_model, worker, session, user, lease_gate):  # noqa: F811
    server.push(text_answer("Hello there.", pieces=3))
    run = await start(session, user, "hi")

    request = await asyncio.to_thread(server.wait_request, 0, 10.0)
    assert request is not None and request.body["messages"] == [{"role": "user", "content": "hi"}]
    assert await db(_lease, run.id) == ("provisioning", "")  # no lease yet: the executor is held at the gate

    lease_gate.set()
    run = await wait_terminal(run.id)
    assert (run.outcome, run.turn_count) == ("completed", 1)
    assert (await db(_state, run.id))[2] == [("user", "hi"), ("assistant", "Hello there.")]
    assert len(server.requests) == 1  # the executor took that request over


async def test_an_early_request_nobody_claims_is_closed_and_the_run_still_runs(
        server, openai_model, worker, session, user, monkeypatch):  # noqa: F811
    monkeypatch.setattr(pool_module, "EARLY_CLAIM_SECONDS", 0.3)
    lost = []

    async def lost_wakeup(kind, run_id, channel=""):  # the worker never hears of the run
        lost.append(kind)

    monkeypatch.setattr(wakeups, "send_wakeup", lost_wakeup)
    words = [f"word{i} " for i in range(3000)]
    server.push(ChatChunks().role().text(*words).finish("stop").usage(50, 3000).sse(delay=0.02),
                text_answer("Hello there.", pieces=3))
    run = await start(session, user, "hi")
    assert await asyncio.to_thread(server.wait_request, 0, 10.0) is not None
    assert lost == ["run.start"]

    assert await server.await_disconnect(0, timeout=5) is not None  # discarded once unclaimed
    assert await db(_lease, run.id) == ("provisioning", "")
    assert await worker.recover_once() == [str(run.id)]  # as the recovery scan would find it
    run = await wait_terminal(run.id)
    assert (run.outcome, (await db(_state, run.id))[2]) == ("completed", [("user", "hi"), ("assistant", "Hello there.")])
    assert len(server.requests) == 2


async def test_without_a_worker_in_this_process_the_start_command_sends_nothing(
        server, openai_model, session, user):  # noqa: F811
    server.push(text_answer("Hello there.", pieces=3))
    run = await start(session, user, "hi")
    assert await asyncio.to_thread(server.wait_request, 0, 0.5) is None  # a web-only process

    async with running_worker():  # the request could be sent: the worker sends it once it drives the run
        run = await wait_terminal(run.id)
    assert run.outcome == "completed" and len(server.requests) == 1
