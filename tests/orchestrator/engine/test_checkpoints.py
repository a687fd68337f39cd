"""StreamCheckpoints: every stream's grown text in one flush, never written without the run's lease."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator.engine.checkpoints import StreamCheckpoints
from orchestrator.engine.states.assistant_streaming import coalesce_seconds
from orchestrator.models import Message, MessageRole, MessageStatus, Run, RunState
from orchestrator.services.sessions import session_create

pytestmark = pytest.mark.django_db

OWNER = "worker-1"


@dataclass
class Text:
    message_id: int
    parts: list[str] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.text)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def streaming_message(user, *, executor_id: str = OWNER) -> Text:
    session = session_create(owner=user)
    run = Run.objects.create(session=session, state=RunState.ASSISTANT_STREAMING, max_turns=5, executor_id=executor_id)
    message = Message.objects.create(session=session, run=run, role=MessageRole.ASSISTANT, text="",
                                     status=MessageStatus.STREAMING)
    return Text(message.id)


def saved(stream: Text) -> str:
    return Message.objects.get(pk=stream.message_id).text


def test_one_flush_writes_every_grown_stream_in_one_statement(user):
    checkpoints = StreamCheckpoints(OWNER)
    streams = [streaming_message(user) for _ in range(10)]
    for stream in streams:
        checkpoints._streams[stream.message_id] = stream  # registered (without starting the flush task)
        checkpoints._saved[stream.message_id] = 0
        stream.parts.append(f"words of {stream.message_id} ")
    with CaptureQueriesContext(connection) as queries:
        assert checkpoints.flush() == 10
    assert len(queries) == 1  # executemany: one statement for the ten rows
    assert [saved(s) for s in streams] == [s.text for s in streams]
    assert checkpoints.flush() == 0  # nothing grew since: nothing written
    streams[3].parts.append("more")
    assert checkpoints.flush() == 1 and saved(streams[3]).endswith("more")


def test_text_is_not_written_once_the_run_is_leased_to_another_worker(user):
    checkpoints = StreamCheckpoints(OWNER)
    ours, theirs = streaming_message(user), streaming_message(user, executor_id="worker-2")
    for stream in (ours, theirs):
        checkpoints._streams[stream.message_id] = stream
        checkpoints._saved[stream.message_id] = 0
        stream.parts.append("stale text from a worker that lost the run")
    checkpoints.flush()
    assert saved(ours) == ours.text
    assert saved(theirs) == ""  # the successor's text wins


def test_coalescing_grows_only_when_a_process_streams_many_answers(settings):
    settings.HARNESS_DELTA_COALESCE_SECONDS, settings.HARNESS_MAX_DELTAS_PER_SECOND = 0.05, 2000
    assert coalesce_seconds(1) == coalesce_seconds(100) == 0.05
    assert coalesce_seconds(200) == pytest.approx(0.1)
    assert coalesce_seconds(1000) == pytest.approx(0.5)  # at most 2000 delta events a second in all
