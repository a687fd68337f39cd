"""The session list (orchestrator/selectors_sharing.py) over 200+ sessions: what each caller sees, newest
activity first, search in titles and messages, scope, archived, and cursor pages that cover the list exactly
once even where many sessions share one `updated_at`; and a session's members.

Search is full-text on PostgreSQL and a substring match on SQLite (`selectors_sharing.matching`): the cases
here are the ones both answer alike (whole words, and words' beginnings), run on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from orchestrator.models import Message, MessageRole, Session, SessionMember
from orchestrator.selectors_sharing import listed_sessions, session_list, session_members
from orchestrator.services.errors import InvalidInput
from tests.factories import make_run

pytestmark = pytest.mark.django_db

OWN, SHARED_TO_ME, SHARED_TO_TEAM, NOT_SHARED = 150, 30, 30, 20


@pytest.fixture
def many(make_user):
    """alice owns 150 sessions (every 10th archived, every 7th mentioning "needle" in a message, every 11th in
    its title); bob owns 80: 30 shared with alice, 30 with her team, 20 with nobody. updated_at goes down one
    second per four sessions, so ties are everywhere."""
    alice, bob = make_user("alice"), make_user("bob")
    team = Group.objects.create(name="platform")
    alice.groups.add(team)
    now = timezone.now()
    sessions = []
    for i in range(OWN + SHARED_TO_ME + SHARED_TO_TEAM + NOT_SHARED):
        owner = alice if i < OWN else bob
        title = f"session {i}" + (" Needle in title" if i % 11 == 0 else "")
        sessions.append(Session(owner=owner, title=title, updated_at=now - timedelta(seconds=i // 4),
                                archived_at=now if i % 10 == 0 else None))
    Session.objects.bulk_create(sessions)
    shared = sessions[OWN:OWN + SHARED_TO_ME]
    teamed = sessions[OWN + SHARED_TO_ME:OWN + SHARED_TO_ME + SHARED_TO_TEAM]
    SessionMember.objects.bulk_create([SessionMember(session=s, user=alice, role="viewer") for s in shared] +
                                      [SessionMember(session=s, group=team, role="collaborator") for s in teamed])
    Message.objects.bulk_create([Message(session=s, role=MessageRole.USER, text=f"where is the NEEDLE n{i}x.")
                                 for i, s in enumerate(sessions) if i % 7 == 0])
    return alice, bob, sessions


def expected_ids(sessions, keep) -> list[str]:
    chosen = [s for i, s in enumerate(sessions) if keep(i, s)]
    return [str(s.id) for s in sorted(chosen, key=lambda s: (s.updated_at, s.id), reverse=True)]


def all_pages(user, *, limit: int, **query) -> list[dict]:
    listed, cursor = [], None
    while True:
        page = session_list(user=user, limit=limit, cursor=cursor, **query)
        assert len(page.sessions) <= limit
        listed += page.sessions
        if page.next_cursor is None:
            return listed
        cursor = page.next_cursor


def test_pages_cover_what_the_caller_sees_once_newest_activity_first(many):
    alice, _bob, sessions = many
    visible = lambda i, s: i < OWN + SHARED_TO_ME + SHARED_TO_TEAM and s.archived_at is None  # noqa: E731
    for limit in (1, 7, 100):
        listed = all_pages(alice, limit=limit)
        assert [s["id"] for s in listed] == expected_ids(sessions, visible)
    assert len(listed) > 200 - 30  # 210 visible, the archived tenth left out
    roles = {s["id"]: (s["role"], s["owner"]) for s in listed}
    assert roles[str(sessions[0].id if sessions[0].archived_at is None else sessions[1].id)] == ("owner", "alice")
    assert roles[str(sessions[OWN + 1].id)] == ("viewer", "bob")
    assert roles[str(sessions[OWN + SHARED_TO_ME + 1].id)] == ("collaborator", "bob")


def test_scope_and_archived(many):
    alice, bob, sessions = many
    mine = all_pages(alice, limit=100, scope="mine")
    assert [s["id"] for s in mine] == expected_ids(sessions, lambda i, s: i < OWN and s.archived_at is None)
    shared = all_pages(alice, limit=100, scope="shared")
    assert [s["id"] for s in shared] == expected_ids(
        sessions, lambda i, s: OWN <= i < OWN + SHARED_TO_ME + SHARED_TO_TEAM and s.archived_at is None)
    archived = all_pages(alice, limit=100, archived=True)
    assert [s["id"] for s in archived] == expected_ids(
        sessions, lambda i, s: i < OWN + SHARED_TO_ME + SHARED_TO_TEAM and s.archived_at is not None)
    assert all(s["archived"] and s["archived_at"] for s in archived)
    assert len(all_pages(bob, limit=100, scope="shared")) == 0


def test_search_matches_titles_and_message_text_case_insensitively(many):
    alice, _bob, sessions = many
    found = all_pages(alice, limit=9, q="needle")
    assert [s["id"] for s in found] == expected_ids(
        sessions, lambda i, s: i < OWN + SHARED_TO_ME + SHARED_TO_TEAM and s.archived_at is None
        and (i % 7 == 0 or i % 11 == 0))
    assert all_pages(alice, limit=9, q="NEEDLE n14x.") == [s for s in found if s["id"] == str(sessions[14].id)]


def test_search_finds_a_word_in_a_title_or_in_a_message_and_the_beginning_of_a_word(many):
    alice, _bob, sessions = many
    plan = Session.objects.create(owner=alice, title="Quarterly planning")
    talk = Session.objects.create(owner=alice, title="untitled")
    Message.objects.create(session=talk, role=MessageRole.ASSISTANT, text="Rolling out the Kubernetes upgrade.")
    assert [s["id"] for s in all_pages(alice, limit=5, q="QUARTERLY")] == [str(plan.id)]
    assert [s["id"] for s in all_pages(alice, limit=5, q="plann")] == [str(plan.id)]
    assert [s["id"] for s in all_pages(alice, limit=5, q="kubernetes")] == [str(talk.id)]
    assert [s["id"] for s in all_pages(alice, limit=5, q="kubernetes upgrade")] == [str(talk.id)]
    assert [s["id"] for s in all_pages(alice, limit=5, q="upgr rolling")] == [str(talk.id)]
    assert all_pages(alice, limit=5, q="xylophone") == []
    assert all_pages(alice, limit=5, q="kubernetes xylophone") == []  # every word must match


def test_search_never_finds_a_session_the_caller_cannot_see(many):
    alice, bob, sessions = many
    hidden = sessions[-1]  # bob's, shared with nobody
    Message.objects.create(session=hidden, role=MessageRole.USER, text="the launch codes are zanzibar")
    Session.objects.filter(pk=hidden.pk).update(title="zanzibar plans", archived_at=None)
    assert [s["id"] for s in all_pages(bob, limit=5, q="zanzibar")] == [str(hidden.id)]  # it can be found
    assert all_pages(alice, limit=5, q="zanzibar") == []
    assert all_pages(alice, limit=5, q="launch codes") == []


def test_search_is_full_text_on_postgresql_and_a_substring_match_elsewhere(many):
    """On PostgreSQL the search's expressions are those of migration 0010's GIN indexes (with sequential
    scans discouraged, as on a large table, the plan uses both); on SQLite it is `LIKE`."""
    alice, _bob, _sessions = many
    sessions = listed_sessions(user=alice, q="needle")[:50]
    if connection.vendor != "postgresql":
        assert " LIKE " in str(sessions.query) and "tsvector" not in str(sessions.query)
        return
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = sessions.explain()
    assert "session_title_search" in plan and "message_text_search" in plan, plan


def test_common_words_answer_alike_once_the_database_knows_they_are_common(many):
    """With statistics (ANALYZE), PostgreSQL's search walks the list for words in many messages ("needle" is in
    every 7th session's message here, and "where" in all of them) instead of collecting the matches; SQLite's
    answers stay the same too."""
    alice, _bob, sessions = many
    Message.objects.filter(session=sessions[14]).update(text="where is the NEEDLE n14x. It is in the server room")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orchestrator_message")
    visible = lambda i, s: i < OWN + SHARED_TO_ME + SHARED_TO_TEAM and s.archived_at is None  # noqa: E731
    assert [s["id"] for s in all_pages(alice, limit=9, q="needle")] == expected_ids(
        sessions, lambda i, s: visible(i, s) and (i % 7 == 0 or i % 11 == 0))
    assert [s["id"] for s in all_pages(alice, limit=9, q="where is")] == expected_ids(
        sessions, lambda i, s: visible(i, s) and i % 7 == 0)
    assert [s["id"] for s in all_pages(alice, limit=9, q="where serv")] == [str(sessions[14].id)]
    assert all_pages(alice, limit=9, q="where xylophone") == []
    if connection.vendor == "postgresql":
        plan = listed_sessions(user=alice, q="where")[:10].explain()
        assert "hashed SubPlan" in plan and "(SubPlan" in plan, plan  # visibility hashed, messages per session


def test_a_megabyte_message_is_stored_and_its_beginning_searched(many):
    """A tool's output may be a megabyte of text, whose words would overflow a tsvector (1 MB) on PostgreSQL:
    the index and the search take a message's first 65,536 characters, so storing it never fails."""
    alice, _bob, sessions = many
    text = "kickoff " + " ".join(f"w{i}" for i in range(150_000))  # ~1.1 MB of distinct words
    if connection.vendor == "postgresql":  # the whole text's words are beyond a tsvector
        with pytest.raises(DatabaseError, match="too long for tsvector"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT to_tsvector('simple', %s)", [text])
    Message.objects.create(session=sessions[1], role=MessageRole.TOOL, text=text)
    assert [s["id"] for s in all_pages(alice, limit=5, q="kickoff")] == [str(sessions[1].id)]


def test_superseded_messages_are_not_searched(many):
    alice, _bob, sessions = many
    Message.objects.filter(session=sessions[7]).update(superseded_at=timezone.now())
    assert all_pages(alice, limit=100, q="needle n7x.") == []


def test_the_live_run_is_listed(many):
    alice, _bob, sessions = many
    live = make_run(sessions[1], "assistant_streaming")
    [entry] = [s for s in session_list(user=alice, limit=5).sessions if s["id"] == str(sessions[1].id)]
    assert entry["active_run"] == {"id": str(live.id), "state": "assistant_streaming", "stop_requested": False}


@pytest.mark.parametrize(("query", "code"), [
    ({"scope": "everyone"}, "invalid_field"), ({"limit": 0}, "invalid_field"), ({"limit": 101}, "invalid_field"),
    ({"cursor": "garbage"}, "invalid_cursor"), ({"cursor": "MjAyNnwx"}, "invalid_cursor"),
    ({"q": "nul\x00"}, "invalid_field"),
])
def test_bad_queries_are_400(many, query, code):
    with pytest.raises(InvalidInput) as raised:
        session_list(user=many[0], **query)
    assert raised.value.code == code


def test_session_members(many):
    alice, bob, sessions = many
    assert session_members(sessions[OWN]) == {"owner": "bob", "members": [{"kind": "user", "name": "alice",
                                                                           "role": "viewer"}]}
    assert session_members(sessions[OWN + SHARED_TO_ME]) == {
        "owner": "bob", "members": [{"kind": "group", "name": "platform", "role": "collaborator"}]}
    assert session_members(sessions[0]) == {"owner": "alice", "members": []}
