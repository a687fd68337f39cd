"""orchestrator/services/runs.py: what starting a run does to its session (the stop is
test_run_stop.py, the approvals test_approvals.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import DatabaseError, transaction
from django.utils import timezone

from orchestrator import events, selectors
from orchestrator.engine.transcript import build_model_request
from orchestrator.models import Message, MessageRole, Run, Session
from orchestrator.services.errors import Conflict, InvalidInput, TooManyRequests
from orchestrator.services.runs import run_start
from orchestrator.services.sessions import session_create, session_update
from orchestrator.tools.registry import get_registry
from tests.factories import add_calls

pytestmark = pytest.mark.django_db(transaction=True)


def title_after_first_run(session: Session, user, text: str = "what is 12 * 7?") -> str:
    run_start(session_id=session.id, user=user, text=text)
    return Session.objects.get(pk=session.pk).title


def test_the_first_message_names_an_unnamed_session(user):
    assert title_after_first_run(session_create(owner=user), user) == "what is 12 * 7?"


def test_a_long_first_message_is_shortened_for_the_title(user):
    title = title_after_first_run(session_create(owner=user), user, "word " * 40)
    assert len(title) == 60 and title.endswith("…")


def test_a_title_the_user_chose_is_kept_even_new_session(user):
    assert title_after_first_run(session_create(owner=user, title="New session"), user) == "New session"
    renamed = session_create(owner=user)
    session_update(session_id=renamed.id, user=user, title="New session")
    assert title_after_first_run(renamed, user) == "New session"


def test_a_user_has_at_most_so_many_live_runs(user, settings):
    settings.HARNESS_MAX_LIVE_RUNS_PER_USER = 2
    sessions = [session_create(owner=user) for _ in range(3)]
    for session in sessions[:2]:
        run_start(session_id=session.id, user=user, text="hi")  # two live runs (no worker drives them here)
    with pytest.raises(TooManyRequests) as refused:
        run_start(session_id=sessions[2].id, user=user, text="hi")
    assert (refused.value.status, refused.value.code) == (429, "too_many_runs")
    assert "2 runs in progress" in refused.value.detail
    assert not Run.objects.filter(session=sessions[2]).exists()


def test_a_user_starts_at_most_so_many_runs_a_minute(user, other_user, settings):
    settings.HARNESS_MAX_RUN_STARTS_PER_MINUTE = 2
    session = session_create(owner=user)
    for _ in range(2):
        run = run_start(session_id=session.id, user=user, text="hi")
        Run.objects.filter(pk=run.pk).update(state="completed")  # ended: only the rate counts now
    with pytest.raises(TooManyRequests, match="2 runs in the last minute"):
        run_start(session_id=session.id, user=user, text="hi")
    run_start(session_id=session_create(owner=other_user).id, user=other_user, text="hi")  # per user
    Run.objects.filter(session=session).update(created_at=timezone.now() - timedelta(minutes=2))
    run_start(session_id=session.id, user=user, text="hi")  # a minute later, fine again


# --- edit and regenerate: run_start(replace_from_message=...) ----------------------------------------------


def finished_turn(session, user, text: str, *, answer: str = "an answer", tool: bool = False) -> list[Message]:
    """A run started through the service, then what the engine would have left: an answer (and a tool message
    with a second answer, if `tool`), the run completed."""
    run = run_start(session_id=session.id, user=user, text=text)
    written = [Message.objects.get(run=run, role=MessageRole.USER)]
    if tool:
        (calling,) = add_calls(run, ("clock", {}), status="succeeded")
        written.append(calling.message)
        written.append(Message.objects.create(session=session, run=run, role=MessageRole.TOOL, text="12:00",
                                              function_call=calling))
    written.append(Message.objects.create(session=session, run=run, role=MessageRole.ASSISTANT, text=answer))
    Run.objects.filter(pk=run.pk).update(state="completed", outcome="completed")
    return written


def current_texts(session) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in selectors.transcript_messages(session)]


def test_an_edit_keeps_an_upload_note_made_after_the_replaced_message(user, session):
    """The file is in the workspace whatever the edit: its note stays in the transcript and the model's input."""
    import io

    from orchestrator.services.uploads import file_upload

    first = finished_turn(session, user, "look at this", answer="which file?")
    upload = file_upload(session_id=session.id, user=user, name="data.csv", content=io.BytesIO(b"1,2\n"))
    run = run_start(session_id=session.id, user=user, text="look at data.csv", replace_from_message=first[0].id)
    assert current_texts(session) == [("note", "uploaded data.csv, 4 bytes"), ("user", "look at data.csv")]
    assert Message.objects.get(pk=upload.message_id).superseded_at is None
    sent = build_model_request(run=run, tools=get_registry()).messages
    assert [(m.role, m.text) for m in sent] == [("user", "[uploaded data.csv, 4 bytes]"), ("user", "look at data.csv")]


def test_an_edit_supersedes_the_latest_user_message_and_everything_after_it(user, session):
    first = finished_turn(session, user, "first question", answer="first answer")
    second = finished_turn(session, user, "second question", answer="second answer", tool=True)
    assert current_texts(session)[-1] == ("assistant", "second answer")  # shown before the edit

    run = run_start(session_id=session.id, user=user, text="second question, edited",
                    replace_from_message=second[0].id)

    assert current_texts(session) == [("user", "first question"), ("assistant", "first answer"),
                                      ("user", "second question, edited")]
    replaced = Message.objects.filter(pk__in=[m.id for m in second]).order_by("id")
    assert [(m.superseded_by_id, m.superseded_at is not None) for m in replaced] == [(run.id, True)] * 4
    assert not Message.objects.filter(pk__in=[m.id for m in first], superseded_at__isnull=False).exists()
    snapshot = selectors.session_snapshot(session)
    assert [m["text"] for m in snapshot["messages"]] == ["first question", "first answer", "second question, edited"]
    assert snapshot["active_run"]["id"] == str(run.id)


def test_the_model_input_of_an_edited_run_leaves_the_superseded_turn_out(user, session):
    finished_turn(session, user, "first question", answer="first answer")
    second = finished_turn(session, user, "second question", answer="second answer", tool=True)
    unedited = run_start(session_id=session.id, user=user, text="third question")
    texts = [m.text for m in build_model_request(run=unedited, tools=get_registry()).messages]
    assert "second question" in texts and "12:00" in texts and "second answer" in texts  # it could be sent...
    Run.objects.filter(pk=unedited.pk).update(state="completed", outcome="completed")
    Message.objects.filter(run=unedited).delete()  # (that run never happened)

    run = run_start(session_id=session.id, user=user, text="second question, edited", replace_from_message=second[0].id)

    request = build_model_request(run=run, tools=get_registry())
    assert [(m.role, m.text) for m in request.messages] == [
        ("user", "first question"), ("assistant", "first answer"), ("user", "second question, edited"),
    ]  # ...and is not, once superseded
    assert request.run_input == "second question, edited"


def test_regenerate_reuses_the_replaced_messages_text(user, session):
    (question, answer) = finished_turn(session, user, "the question")
    run = run_start(session_id=session.id, user=user, text=None, replace_from_message=question.id)
    new_question = Message.objects.get(run=run, role=MessageRole.USER)
    assert new_question.text == "the question" and new_question.id > answer.id
    assert current_texts(session) == [("user", "the question")]
    assert [m.text for m in build_model_request(run=run, tools=get_registry()).messages] == ["the question"]


def test_replacing_publishes_messages_superseded_first_after_the_commit(user, session):
    (question, answer) = finished_turn(session, user, "the question")
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.session_group(session.id), channel)
    with transaction.atomic():
        run = run_start(session_id=session.id, user=user, text="edited", replace_from_message=question.id)
        assert channel not in layer.channels  # nothing published before the commit
    published = [async_to_sync(layer.receive)(channel)["event"] for _ in range(4)]
    assert [e["type"] for e in published] == ["messages.superseded", "session.updated", "message.completed",
                                              "run.state"]
    assert published[0] == {"type": "messages.superseded", "message_ids": [question.id, answer.id],
                            "run_id": str(run.id)}


@pytest.mark.parametrize("kind", ["answer", "first_question", "other_session", "unknown", "bool", "string",
                                  "huge", "zero"])
def test_only_a_user_message_of_this_session_can_be_replaced(user, session, kind):
    first = finished_turn(session, user, "first question")
    second = finished_turn(session, user, "second question")
    other = finished_turn(session_create(owner=user), user, "elsewhere")
    target = {"answer": second[1].id, "first_question": first[0].id, "other_session": other[0].id,
              "unknown": second[1].id + 1000, "bool": True, "string": str(second[0].id), "huge": 2**70,
              "zero": 0}[kind]
    error = Conflict if kind == "first_question" else InvalidInput
    code = "not_latest_user_message" if kind == "first_question" else "invalid_replace_from_message"
    with pytest.raises(error) as refused:
        run_start(session_id=session.id, user=user, text="edited", replace_from_message=target)
    assert refused.value.code == code
    assert refused.value.status == (409 if error is Conflict else 400)
    assert Run.objects.filter(session=session).count() == 2  # nothing started...
    assert not Message.objects.filter(superseded_at__isnull=False).exists()  # ...nothing superseded


def test_a_superseded_message_cannot_be_replaced_again(user, session):
    (question, _) = finished_turn(session, user, "the question")
    run = run_start(session_id=session.id, user=user, text="edited", replace_from_message=question.id)
    Run.objects.filter(pk=run.pk).update(state="completed", outcome="completed")
    with pytest.raises(Conflict) as refused:
        run_start(session_id=session.id, user=user, text="edited again", replace_from_message=question.id)
    assert refused.value.code == "not_latest_user_message"


def test_nothing_is_replaced_while_a_run_is_live(user, session):
    (question, _) = finished_turn(session, user, "the question")
    live = run_start(session_id=session.id, user=user, text="a live one")
    latest_question = Message.objects.get(run=live, role=MessageRole.USER)
    for target in (question.id, latest_question.id):
        with pytest.raises(Conflict) as refused:
            run_start(session_id=session.id, user=user, text=None, replace_from_message=target)
        assert refused.value.code == "run_in_progress"
    assert not Message.objects.filter(superseded_at__isnull=False).exists()


def test_a_start_that_fails_after_superseding_rolls_the_superseding_back(user, session, monkeypatch):
    (question, _) = finished_turn(session, user, "the question")

    def broken(**kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(Message.objects, "create", broken)
    with pytest.raises(DatabaseError):
        run_start(session_id=session.id, user=user, text="edited", replace_from_message=question.id)
    assert not Message.objects.filter(superseded_at__isnull=False).exists()
    assert Run.objects.filter(session=session).count() == 1


def test_an_edit_with_empty_text_is_refused_and_regenerate_needs_no_text(user, session):
    (question, _) = finished_turn(session, user, "the question")
    with pytest.raises(InvalidInput, match="must not be empty"):
        run_start(session_id=session.id, user=user, text="  ", replace_from_message=question.id)
    with pytest.raises(InvalidInput):
        run_start(session_id=session.id, user=user, text=None)  # a plain start needs its text


def test_an_edit_of_the_first_message_renames_a_session_it_named(user):
    session = session_create(owner=user)
    (question, _) = finished_turn(session, user, "a secret I regret")
    run = run_start(session_id=session.id, user=user, text="a better question", replace_from_message=question.id)
    assert Session.objects.get(pk=session.pk).title == "a better question"
    Run.objects.filter(pk=run.pk).update(state="completed", outcome="completed")
    latest = Message.objects.get(run=run)
    finished_turn(session, user, "a second question")  # a later message does not rename it...
    second = Message.objects.latest_user(session.id)
    run_start(session_id=session.id, user=user, text="edited", replace_from_message=second.id)  # ...nor its edit
    assert Session.objects.get(pk=session.pk).title == "a better question" and latest.text == "a better question"


def test_an_edit_keeps_a_title_the_user_chose(user):
    session = session_create(owner=user, title="My title")
    (question, _) = finished_turn(session, user, "My title")
    run_start(session_id=session.id, user=user, text="something else", replace_from_message=question.id)
    assert Session.objects.get(pk=session.pk).title == "My title"
