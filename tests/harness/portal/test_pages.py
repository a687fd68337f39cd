"""The server-rendered pages: login required, own sessions only, transcript escaped, long transcripts paged."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator.models import Message, Run, RunState, Session
from orchestrator.services.runs import run_start
from orchestrator.services.sessions import session_create
from tests.factories import add_messages, make_run

pytestmark = pytest.mark.django_db


def test_pages_require_login(client, session):
    for url in ("/", f"/sessions/{session.id}/"):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/login/")


def test_home_lists_only_my_sessions(client, user, other_user):
    session_create(owner=user, title="mine")
    session_create(owner=other_user, title="theirs")
    client.force_login(user)
    body = client.get("/").content.decode()
    assert "mine" in body and "theirs" not in body


def test_home_lists_the_newest_sessions_only_with_the_owners_actions_on_their_own(client, user, other_user,
                                                                                  django_assert_max_num_queries):
    from harness.portal.views import HOME_SESSIONS
    from orchestrator.services.members import session_member_set

    for n in range(HOME_SESSIONS + 5):
        session_create(owner=user, title=f"plan {n:02d}")
    shared = session_create(owner=other_user, title="their notes")
    session_member_set(session_id=shared.id, user=other_user, kind="user", name=user.get_username(), role="viewer")
    client.force_login(user)
    with django_assert_max_num_queries(20):  # however many sessions there are
        body = client.get("/").content.decode()
    start = body.index('<ul class="sessions">')
    home = body[start:body.index("</ul>", start) + 200]  # the list and what follows it, not the sidebar
    assert "their notes" in home and f"{other_user.get_username()}'s · viewer" in home
    assert f"plan {HOME_SESSIONS + 4 - (HOME_SESSIONS - 2):02d}" in home and "plan 00" not in home
    assert home.count('class="session-row"') == HOME_SESSIONS
    assert f"/sessions/{shared.id}/rename" not in home and home.count("/rename") == HOME_SESSIONS - 1
    assert "Older sessions are in the sidebar" in home


def test_session_page_shows_the_transcript_escaped_with_statuses(client, user, session, other_user):
    run = make_run(session, RunState.STOPPED)
    Message.objects.create(session=session, run=run, role="user", text="<script>alert(1)</script>")
    Message.objects.create(session=session, run=run, role="assistant", text="half an answ", status="stopped")
    client.force_login(user)
    body = client.get(f"/sessions/{session.id}/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>alert(1)" not in body
    assert "half an answ" in body and "stopped" in body
    client.force_login(other_user)
    assert client.get(f"/sessions/{session.id}/").status_code == 404


def test_login_page_logs_in(client, user):
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "alice", "password": "alice-password-1"})
    assert response.status_code == 302 and client.get("/").status_code == 200


def test_create_rename_and_delete_sessions_from_the_list(client, user):
    client.force_login(user)
    response = client.post("/sessions/new", {"title": "  Plan   the launch "})
    session = Session.objects.get(owner=user)
    assert response.status_code == 302 and response.url == f"/sessions/{session.id}/"
    assert session.title == "Plan the launch"
    assert client.post(f"/sessions/{session.id}/rename", {"title": "Launch plan"}).url == "/"
    session.refresh_from_db()
    assert session.title == "Launch plan"
    assert client.post(f"/sessions/{session.id}/delete").url == "/"
    assert not Session.objects.filter(pk=session.pk).exists()


def test_a_session_with_a_live_run_is_not_deleted_and_the_list_says_why(client, user):
    session = session_create(owner=user, title="busy")
    run_start(session_id=session.id, user=user, text="hello")
    client.force_login(user)
    page = client.post(f"/sessions/{session.id}/delete", follow=True).content.decode()
    assert Session.objects.filter(pk=session.pk).exists()
    assert "stop the run before deleting its session" in page


def test_another_users_session_cannot_be_renamed_or_deleted(client, user, other_user):
    session = session_create(owner=user, title="mine")
    client.force_login(other_user)
    assert client.post(f"/sessions/{session.id}/rename", {"title": "theirs"}).status_code == 404
    assert client.post(f"/sessions/{session.id}/delete").status_code == 404
    session.refresh_from_db()
    assert session.title == "mine"


LOCAL_MODEL = "openai:llama3@http://127.0.0.1:11434/v1"


def test_the_session_page_offers_the_configured_models(client, user, session, settings):
    settings.ANTHROPIC_API_KEY = ""
    settings.HARNESS_MODELS = [LOCAL_MODEL, "anthropic:claude-sonnet-4-6"]
    client.force_login(user)
    body = client.get(f"/sessions/{session.id}/").content.decode()
    assert 'id="model-picker"' in body
    assert '<option value="scripted" selected>' in body
    assert f'<option value="{LOCAL_MODEL}">llama3 (openai at 127.0.0.1:11434)</option>' in body
    # A model without its key is listed, but cannot be chosen, and says why.
    assert '<option value="anthropic:claude-sonnet-4-6" disabled title="model' in body and "ANTHROPIC_API_KEY" in body


def test_choosing_a_model_in_the_page(client, user, session, other_user, settings):
    settings.HARNESS_MODELS = [LOCAL_MODEL]
    client.force_login(user)
    response = client.post(f"/sessions/{session.id}/model", {"model": LOCAL_MODEL}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert f'<option value="{LOCAL_MODEL}" selected>' in response.content.decode()
    session.refresh_from_db()
    assert session.model == LOCAL_MODEL

    refused = client.post(f"/sessions/{session.id}/model", {"model": "openai:gpt-x"}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 200  # the picker, re-rendered in place with the refusal
    assert 'role="alert"' in refused.content.decode() and "is not offered here" in refused.content.decode()
    session.refresh_from_db()
    assert session.model == LOCAL_MODEL

    client.force_login(other_user)
    assert client.post(f"/sessions/{session.id}/model", {"model": "scripted"}).status_code == 404
    session.refresh_from_db()
    assert session.model == LOCAL_MODEL


# --- long sessions: the page renders the newest page, older pages come from /messages?before=<id> -----------
def message_ids(body: str) -> list[int]:
    return [int(i) for i in re.findall(r'<li id="msg-(\d+)"', body)]


def older_link(body: str) -> str | None:
    """The "load older" sentinel's URL, if the fragment has one."""
    links = re.findall(r'<li class="older"><button[^>]* hx-get="([^"]+)" hx-trigger="revealed, click"', body)
    assert len(links) <= 1
    return links[0].replace("&amp;", "&") if links else None


def page_queries(client, session) -> tuple[str, int]:
    with CaptureQueriesContext(connection) as queries:
        body = client.get(f"/sessions/{session.id}/").content.decode()
    return body, len(queries)


def test_a_session_with_thousands_of_messages_renders_its_newest_fifty_in_as_many_queries_as_a_short_one(
        client, user, django_assert_max_num_queries):
    short = session_create(owner=user, title="short")
    add_messages(short, 60)
    long = session_create(owner=user, title="long")
    history = add_messages(long, 3000)
    client.force_login(user)
    _, short_queries = page_queries(client, short)

    with django_assert_max_num_queries(short_queries):
        body = client.get(f"/sessions/{long.id}/").content.decode()
    assert message_ids(body) == [m.id for m in history[-50:]]
    assert "message 3000" in body and "message 2950" not in body
    assert older_link(body) == f"/sessions/{long.id}/messages?before={history[-50].id}"


def test_older_messages_come_a_page_at_a_time_under_a_new_sentinel_until_the_first(client, user, session):
    history = add_messages(session, 120)
    client.force_login(user)
    url = older_link(client.get(f"/sessions/{session.id}/").content.decode())
    pages = []
    while url:
        response = client.get(url, HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        body = response.content.decode()
        pages.append(message_ids(body))
        url = older_link(body)
        assert 'id="transcript"' not in body  # only items: they replace the sentinel that asked for them
    assert pages == [[m.id for m in history[20:70]], [m.id for m in history[:20]]]


def test_older_messages_are_only_the_owners_and_need_a_message_id(client, user, other_user, session):
    history = add_messages(session, 60)
    url = f"/sessions/{session.id}/messages?before={history[-1].id}"
    assert client.get(url).status_code == 302  # login first
    client.force_login(other_user)
    response = client.get(url)
    assert response.status_code == 404 and "<h1>Not found</h1>" in response.content.decode()
    assert "message 1" not in response.content.decode()
    client.force_login(user)
    for bad in ("", "?before=", "?before=abc", "?before=-1", "?before=" + "9" * 40, "?before=%D9%A1"):
        assert client.get(f"/sessions/{session.id}/messages{bad}").status_code == 400, bad
    assert client.post(url).status_code == 405


# --- edit and regenerate ------------------------------------------------------------------------------------


def answered(session, user, text: str) -> tuple[Message, Message]:
    run = run_start(session_id=session.id, user=user, text=text)
    answer = Message.objects.create(session=session, run=run, role="assistant", text=f"re: {text}")
    Run.objects.filter(pk=run.pk).update(state=RunState.COMPLETED, outcome="completed")
    return Message.objects.get(run=run, role="user"), answer


def current(session) -> list[str]:
    return [m.text for m in Message.objects.current().filter(session=session)]


def test_the_latest_user_message_and_answer_carry_edit_and_regenerate(client, user, session):
    question, answer = answered(session, user, "a <b>question</b>")
    client.force_login(user)
    body = client.get(f"/sessions/{session.id}/").content.decode()
    assert f'data-message-id="{question.id}" data-text="a &lt;b&gt;question&lt;/b&gt;">Edit</button>' in body
    assert f'hx-vals=\'{{"message_id": "{answer.id}"}}\'' in body and ">Regenerate</button>" in body
    assert 'name="replace_from_message"' in body and "Editing your last message" in body  # the idle composer


def test_a_send_from_an_editing_composer_replaces_the_last_turn(client, user, session):
    answered(session, user, "first")
    question, _ = answered(session, user, "second")
    client.force_login(user)
    response = client.post(f"/sessions/{session.id}/send", {"text": "second, edited",
                                                            "replace_from_message": str(question.id)})
    assert response.status_code == 200 and "data-clear-draft" in response.content.decode()
    assert current(session) == ["first", "re: first", "second, edited"]


@pytest.mark.parametrize("value, reason", [("older", "not the latest user message"), ("abc", "must be a message id")])
def test_a_refused_edit_says_why_in_the_composer_and_changes_nothing(client, user, session, value, reason):
    older, _ = answered(session, user, "first")
    answered(session, user, "second")
    client.force_login(user)
    value = str(older.id) if value == "older" else value
    body = client.post(f"/sessions/{session.id}/send", {"text": "edited", "replace_from_message": value}).content
    assert reason in body.decode() and "data-clear-draft" not in body.decode()
    assert current(session) == ["first", "re: first", "second", "re: second"]


def test_regenerate_replaces_the_last_turn_with_the_same_question(client, user, session):
    answered(session, user, "first")
    _, answer = answered(session, user, "second")
    client.force_login(user)
    response = client.post(f"/sessions/{session.id}/regenerate", {"message_id": str(answer.id)})
    assert response.status_code == 200 and 'data-mode="running"' in response.content.decode()
    assert current(session) == ["first", "re: first", "second"]
    assert Message.objects.current().get(session=session, text="second").run.state == RunState.PROVISIONING


def test_regenerating_an_answer_that_is_no_longer_the_latest_changes_nothing(client, user, other_user, session):
    _, old_answer = answered(session, user, "first")
    answered(session, user, "second")
    client.force_login(user)
    for value in (str(old_answer.id), "", "x"):
        body = client.post(f"/sessions/{session.id}/regenerate", {"message_id": value}).content.decode()
        assert "no longer the latest answer" in body
    assert current(session) == ["first", "re: first", "second", "re: second"]
    client.force_login(other_user)
    assert client.post(f"/sessions/{session.id}/regenerate", {"message_id": str(old_answer.id)}).status_code == 404
