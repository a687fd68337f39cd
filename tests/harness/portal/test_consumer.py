"""The session page's WebSocket: login + Origin checks, the snapshot, and one OOB fragment per event."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from harness.asgi import application
from orchestrator.models import Message
from orchestrator.services.runs import run_start, run_stop
from tests.factories import add_messages
from tests.helpers import db, script, shell_script, start, wait_terminal, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1")


async def cookie_for(user) -> bytes:
    client = Client()
    await db(client.force_login, user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def connect(session_id, *, user=None, origin=ORIGIN) -> tuple[WebsocketCommunicator, bool]:
    headers = [origin] if origin else []
    if user is not None:
        headers.append((b"cookie", await cookie_for(user)))
    communicator = WebsocketCommunicator(application, f"/ws/sessions/{session_id}/", headers=headers)
    connected, _ = await communicator.connect()
    return communicator, connected


async def close_code(communicator: WebsocketCommunicator) -> int:
    message = await communicator.receive_output(timeout=5)
    assert message["type"] == "websocket.close"
    return message["code"]


async def test_anonymous_tabs_are_closed_with_4401(session):
    communicator, connected = await connect(session.id)
    assert connected and await close_code(communicator) == 4401


async def test_another_users_or_unknown_session_is_closed_with_4404(session, other_user):
    for session_id in (session.id, "not-a-uuid", "3b2b3f0e-8a6b-4c1e-9d6a-000000000000"):
        communicator, connected = await connect(session_id, user=other_user)
        assert connected and await close_code(communicator) == 4404


async def test_a_foreign_origin_is_refused(session, user):
    communicator, connected = await connect(session.id, user=user, origin=(b"origin", b"http://evil.example"))
    assert not connected
    same_site, connected = await connect(session.id, user=user)
    assert connected  # the same request from our own origin is accepted
    await same_site.disconnect()


async def test_connect_sends_a_snapshot_of_every_live_part(session, user):
    await start(session, user, "hello <b>there</b>")
    communicator, _ = await connect(session.id, user=user)
    snapshot = await communicator.receive_from(timeout=5)
    ids = re.findall(r'<\w+ id="([\w-]+)"[^>]*hx-swap-oob="true"', snapshot)
    assert ids == ["composer", "run-status", "transcript", "approvals", "steering", "model-picker", "presence"]
    assert 'data-mode="running"' in snapshot  # a run is in flight: the composer shows stop
    assert "hello &lt;b&gt;there&lt;/b&gt;" in snapshot and "<b>there</b>" not in snapshot
    await communicator.disconnect()


def fragments_until(marker: str):
    """Collect messages until one contains `marker`."""

    async def collect(communicator: WebsocketCommunicator) -> list[str]:
        received = []
        while True:
            received.append(await communicator.receive_from(timeout=10))
            if marker in received[-1]:
                return received

    return collect


async def test_a_run_plays_out_as_fragments(worker, session, user):
    communicator, _ = await connect(session.id, user=user)
    await communicator.receive_from(timeout=5)  # snapshot
    run = await start(session, user, script({"text": "alpha beta gamma", "delay_ms": 30}))
    received = await fragments_until('data-mode="idle"')(communicator)
    joined = "".join(received)
    assert 'hx-swap-oob="beforeend:#transcript"' in joined  # new messages are appended
    assert 'data-mode="stop"' in joined and 'data-mode="idle"' in joined  # running, then idle again
    assert re.search(r'<div id="msg-\d+-tail" hx-swap-oob="innerHTML"><p>alpha', joined)  # streamed, rendered
    assert "Completed" in joined
    final = await db(lambda: Message.objects.filter(run=run, role="assistant").get())
    assert f'<li id="msg-{final.id}" class="msg msg-assistant" data-status="complete" hx-swap-oob="true">' in joined
    await communicator.disconnect()


class _Texts(HTMLParser):
    """The text inside each element with an id, as a browser would read it."""

    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.texts: dict[str, str] = {}
        self.open: list[str | None] = []
        self.feed(fragment)

    def handle_starttag(self, tag, attrs):
        if tag not in ("br", "hr", "input"):
            self.open.append(dict(attrs).get("id"))
            if self.open[-1]:
                self.texts[self.open[-1]] = ""

    def handle_endtag(self, tag):
        if tag not in ("br", "hr", "input") and self.open:
            self.open.pop()

    def handle_data(self, data):
        for element_id in filter(None, self.open):
            self.texts[element_id] += data


class ShownText:
    """What htmx makes of one streaming answer from the fragments the consumer sends: finished blocks are
    appended to `#msg-N-md`, the open tail replaces `#msg-N-tail`, and a whole message replaces both."""

    def __init__(self, message_id: int) -> None:
        self.id, self.finished, self.tail = message_id, "", ""

    def apply(self, fragment: str) -> str:
        texts = _Texts(fragment).texts
        if f"msg-{self.id}" in texts:  # the whole message (a snapshot, or the finished answer)
            self.finished = texts.get(f"msg-{self.id}-md", texts[f"msg-{self.id}-text"])
            self.tail = texts.get(f"msg-{self.id}-tail", "")
        else:
            self.finished += texts.get(f"msg-{self.id}-md", "")
            self.tail = texts.get(f"msg-{self.id}-tail", self.tail)
        return self.text

    @property
    def text(self) -> str:
        return " ".join(f"{self.finished} {self.tail}".split())


async def test_a_tab_joining_mid_stream_never_shows_text_twice(worker, session, user):
    run = await start(session, user, script({"words": 300, "delay_ms": 5}))
    message = await wait_until(
        lambda: Message.objects.filter(run=run, role="assistant").exclude(text="").first(), what="streamed text"
    )
    communicator, _ = await connect(session.id, user=user)
    snapshot = await communicator.receive_from(timeout=5)
    page = ShownText(message.id)
    shown = page.apply(snapshot)
    assert shown  # the snapshot holds what was streamed so far
    observed = [shown]
    while True:
        fragment = await communicator.receive_from(timeout=10)
        shown = page.apply(fragment)
        observed.append(shown)
        if f'<li id="msg-{message.id}"' in fragment and 'data-status="complete"' in fragment:
            break
    final = " ".join((await db(lambda: Message.objects.get(pk=message.id).text)).split())
    assert shown == final
    # Never a doubled or scrambled word on the way: the tab always showed a prefix of the true text.
    assert all(final.startswith(text) for text in observed)
    assert len(set(observed)) > 3  # and it really streamed into this tab
    await wait_terminal(run.id)
    await communicator.disconnect()


async def test_a_stop_from_elsewhere_reaches_this_tab(worker, session, user):
    communicator, _ = await connect(session.id, user=user)
    await communicator.receive_from(timeout=5)
    await start(session, user, script({"words": 5000, "delay_ms": 5}))
    early = "".join(await fragments_until('hx-swap-oob="innerHTML">')(communicator))  # text is streaming
    assert 'data-mode="stop"' in early and "msg-user" in early
    await db(run_stop, session_id=session.id, requested_by=user)
    received = "".join(await fragments_until('data-mode="idle"')(communicator))
    assert "Stopping…" in received or 'data-mode="stopping"' in received
    assert 'data-status="stopped"' in received  # the partial answer, marked stopped
    await communicator.disconnect()


async def test_approval_cards_appear_and_resolve(worker, session, user):
    communicator, _ = await connect(session.id, user=user)
    await communicator.receive_from(timeout=5)
    await start(session, user, shell_script("echo <x>"))
    received = "".join(await fragments_until('class="approve"')(communicator))
    assert "<strong>shell</strong> wants to run" in received and "echo &lt;x&gt;" in received
    await db(run_stop, session_id=session.id, requested_by=user)
    received = "".join(await fragments_until("Closed: the run was stopped")(communicator))
    assert received.count('class="approve"') == 0 or received.rindex("Closed") > received.rindex('class="approve"')
    await communicator.disconnect()


async def test_the_title_a_session_takes_from_its_first_message_reaches_open_tabs(user):
    from orchestrator.services.sessions import session_create

    untitled = await db(session_create, owner=user)
    communicator, _ = await connect(untitled.id, user=user)
    snapshot = await communicator.receive_from(timeout=5)
    await start(untitled, user, "plan the <launch>")
    received = "".join(await fragments_until('id="session-title"')(communicator))
    assert '<h1 id="session-title" hx-swap-oob="true">plan the &lt;launch&gt;</h1>' in received
    assert "New session" not in received and "session-title" not in snapshot  # the page itself has the old one
    await communicator.disconnect()


async def test_a_model_chosen_in_one_tab_reaches_the_others(user, session, settings):
    from orchestrator.services.sessions import session_update

    local = "openai:llama3@http://127.0.0.1:11434/v1"
    settings.HARNESS_MODELS = [local]
    communicator, _ = await connect(session.id, user=user)
    snapshot = await communicator.receive_from(timeout=5)
    assert '<option value="scripted" selected>' in snapshot
    await db(session_update, session_id=session.id, user=user, model=local)
    received = "".join(await fragments_until('id="model-picker"')(communicator))
    assert 'id="model-picker" class="model-picker"' in received and 'hx-swap-oob="true"' in received
    assert f'<option value="{local}" selected>' in received
    await communicator.disconnect()


async def test_streaming_deltas_reach_the_page_without_a_trip_to_the_database_thread(session, user, monkeypatch):
    """~20 deltas a second per open tab: neither channels' per-message connection clean-up nor the fragment
    rendering may cost a hop to the (single) database thread for a delta the tab can simply append."""
    import channels.consumer

    from harness.portal import consumers as portal_consumers
    from orchestrator import events

    message = await db(Message.objects.create, session=session, role="assistant", text="Hel", status="streaming")
    communicator, _ = await connect(session.id, user=user)
    await communicator.receive_from(timeout=5)  # the snapshot holds "Hel"
    hops = []

    async def counted_close():
        hops.append("aclose_old_connections")

    def counted_sync_to_async(fn):
        hops.append(getattr(fn, "__name__", repr(fn)))
        return db_hop(fn)

    db_hop = portal_consumers.database_sync_to_async
    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted_close)
    monkeypatch.setattr(portal_consumers, "database_sync_to_async", counted_sync_to_async)
    delta = events.message_delta(run_id=session.id, message_id=message.id, offset=3, text="lo <b>", produced_at=0)
    await events.publish(session.id, delta)
    received = await communicator.receive_from(timeout=5)
    assert received == f'<div id="msg-{message.id}-tail" hx-swap-oob="innerHTML"><p>Hello &lt;b&gt;</p>\n</div>'
    assert hops == []
    # A delta the tab cannot append (text it never received) still goes to the database, to fill the gap.
    await db(Message.objects.filter(pk=message.id).update, text="Hello <b>there")
    await events.publish(session.id, events.message_delta(run_id=session.id, message_id=message.id, offset=14,
                                                          text="!", produced_at=0))
    received = await communicator.receive_from(timeout=5)
    assert "Hello &lt;b&gt;there!" in received and hops == ["_catch_up"]
    await communicator.disconnect()


async def test_a_message_committed_while_the_snapshot_is_read_is_shown_once(session, user, monkeypatch):
    """The engine commits from its own thread, so a message can land while a tab's snapshot is being read:
    the tab must show it exactly once — in the snapshot or from its event, never both."""
    from orchestrator import events, selectors

    created = []
    real_latest_run = selectors.latest_run

    def latest_run_with_a_commit_in_between(session_id):
        if not created:  # the first snapshot read: a notice is committed right now, mid-snapshot
            created.append(Message.objects.create(session_id=session_id, role="system", text="mid-snapshot notice"))
        return real_latest_run(session_id)

    monkeypatch.setattr(selectors, "latest_run", latest_run_with_a_commit_in_between)
    communicator, _ = await connect(session.id, user=user)
    snapshot = await communicator.receive_from(timeout=5)
    [notice] = created
    await events.publish(session.id, events.message_completed(message=notice))  # its event, after commit
    received = snapshot + "".join(await fragments_until(f'id="msg-{notice.id}"')(communicator))
    assert received.count(f'id="msg-{notice.id}"') == 1
    await communicator.disconnect()


async def test_the_snapshot_sends_the_newest_page_and_events_follow_exactly_what_it_sent(session, user):
    """A long session's tab gets its newest 50 messages; a message.completed for one of them replaces it, for a
    new one appends it, and for one older than the page never appends it at the end."""
    from orchestrator import events

    history = await db(add_messages, session, 80)
    communicator, _ = await connect(session.id, user=user)
    snapshot = await communicator.receive_from(timeout=5)
    assert [int(i) for i in re.findall(r'<li id="msg-(\d+)"', snapshot)] == [m.id for m in history[-50:]]
    assert f"messages?before={history[-50].id}" in snapshot  # the sentinel that loads older ones

    newest, oldest = history[-1], history[0]
    newer = await db(Message.objects.create, session=session, role="system", text="a new notice")
    for message in (newest, oldest, newer):
        await events.publish(session.id, events.message_completed(message=message))
    replaced, old, appended = [await communicator.receive_from(timeout=5) for _ in range(3)]
    assert replaced.startswith(f'<li id="msg-{newest.id}"') and 'hx-swap-oob="true"' in replaced
    assert old.startswith(f'<li id="msg-{oldest.id}"') and "beforeend" not in old
    assert appended.startswith('<div hx-swap-oob="beforeend:#transcript"><li id="msg-%d"' % newer.id)
    await communicator.disconnect()


async def test_an_edit_in_one_tab_takes_the_replaced_messages_out_of_the_others(session, user):
    first = await start(session, user, "the question")
    await db(Message.objects.create, session=session, run=first, role="assistant", text="the answer")
    await db(lambda: type(first).objects.filter(pk=first.pk).update(state="completed", outcome="completed"))
    replaced = await db(lambda: list(Message.objects.filter(run=first).values_list("id", flat=True)))
    communicator, _ = await connect(session.id, user=user)
    snapshot = await communicator.receive_from(timeout=5)
    assert all(f'id="msg-{i}"' in snapshot for i in replaced)  # shown before the edit
    await db(run_start, session_id=session.id, user=user, text="the question, edited",
             replace_from_message=replaced[0])
    received = await fragments_until("the question, edited")(communicator)
    assert received[0] == "".join(f'<li id="msg-{i}" hx-swap-oob="delete"></li>' for i in replaced)
    await communicator.disconnect()
    communicator, _ = await connect(session.id, user=user)
    snapshot = await communicator.receive_from(timeout=5)  # a tab that opens now never sees them
    assert not any(f'id="msg-{i}"' in snapshot for i in replaced) and "the question, edited" in snapshot
    await communicator.disconnect()
