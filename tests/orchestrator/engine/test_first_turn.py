"""A run's first model request is sent while the steps before it commit (orchestrator/engine/speculation.py),
through the real worker and the real OpenAI SDK against the fake Chat Completions server.

Provisioning is held at a gate here, so "before the steps commit" is observed rather than raced: the request
reaches the server while the run is still `provisioning` with no answer opened. Once the gate opens, the run
goes on with that same request (one request in all); a stop that landed meanwhile closes it, burns no turn
and opens no answer.
"""

from __future__ import annotations

import asyncio

import pytest

from devtools.fakes.openai_wire import ChatChunks, text_answer
from orchestrator.engine.step import HANDLERS
from orchestrator.models import Message, Run, RunState
from orchestrator.services.runs import run_stop
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


async def test_a_stop_before_the_model_call_closes_the_speculated_request(server, openai_model, worker,  # noqa: F811
                                                                          session, user, provisioning_gate):
    words = [f"word{i} " for i in range(3000)]  # a minute of answer if nobody closes it
    server.push(ChatChunks().role().text(*words).finish("stop").usage(50, 3000).sse(delay=0.02))
    run = await start(session, user, "tell me a long story")
    assert await asyncio.to_thread(server.wait_request, 0, 10.0) is not None

    assert (await db(run_stop, session_id=session.id, requested_by=user)).accepted
    provisioning_gate.set()
    run = await wait_terminal(run.id)

    assert await server.await_disconnect(timeout=5) is not None
    assert (run.outcome, run.turn_count) == ("stopped", 0)  # no turn burnt, no answer opened
    assert [role for role, _ in (await db(_state, run.id))[2]] == ["user"]
    assert len(server.requests) == 1
