"""Helpers for async tests: database access from the event loop, waiting on conditions with deadlines
(never sleeping as synchronisation), and starting runs of the scripted model — among them a run the real
worker parks on a shell call's approval."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from channels.db import database_sync_to_async

from orchestrator.models import Approval, Run
from orchestrator.services.runs import run_start

T = TypeVar("T")


async def db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await database_sync_to_async(fn)(*args, **kwargs)


async def wait_until(predicate: Callable[[], T], *, timeout: float = 10.0, what: str = "condition") -> T:
    """Poll a (synchronous, DB-reading) predicate until it is truthy or the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await db(predicate)
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def script(*turns: dict) -> str:
    return "script:" + json.dumps({"turns": list(turns)})


def shell_script(command: str, *then: dict) -> str:
    """A script whose first turn asks to run `command` in the shell (a call that waits on a person's approval),
    then plays the turns `then`."""
    return script({"calls": [{"name": "shell", "arguments": {"command": command}}]}, *then)


async def start(session, user, text: str) -> Run:
    return await db(run_start, session_id=session.id, user=user, text=text)


def pending_approval(run_id) -> Approval | None:
    return Approval.objects.filter(run_id=run_id, status="pending").select_related("function_call").first()


async def start_parked_on_shell(session, user, command: str, *then: dict) -> tuple[Run, Approval]:
    """Start a run whose model asks to run `command` in the shell, and wait until the call's approval is pending
    (the worker must be running). The run as started, and the approval."""
    run = await start(session, user, shell_script(command, *then))
    approval = await wait_until(lambda: pending_approval(run.id), what="the shell approval")
    return run, approval


def run_state(run_id) -> str:
    return Run.objects.get(pk=run_id).state


async def wait_for_state(run_id, *states: str, timeout: float = 10.0) -> Run:
    def reached():
        run = Run.objects.get(pk=run_id)
        return run if run.state in states else None

    return await wait_until(reached, timeout=timeout, what=f"run {run_id} to reach {states}")


async def wait_terminal(run_id, timeout: float = 10.0) -> Run:
    return await wait_for_state(run_id, "completed", "stopped", "failed", timeout=timeout)


# --- the admin -------------------------------------------------------------------------------------------------


def admin_form_data(response) -> dict:
    """What an admin change page posts back unchanged: its form's and every inline's fields (management forms
    included), read from the page's context. A test then changes what it means to change."""
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data = {}
    for form in forms:
        for name in form.fields:
            value = form[name].value()
            if value is not None and value is not False:
                data[form.add_prefix(name)] = value
    return data


def members_formset(response):
    """The members inline's formset of a session's admin page."""
    return next(i.formset for i in response.context["inline_admin_formsets"] if i.formset.model.__name__ ==
                "SessionMember")


def admin_member_removal(client, member) -> tuple[str, dict]:
    """The URL and POST body that remove `member` (a SessionMember) on its session's admin page, as read by `client`
    (staff who can see the page): the page's form with the member's row ticked for deletion."""
    from django.urls import reverse

    url = reverse("admin:orchestrator_session_change", args=[member.session_id])
    page = client.get(url)
    assert page.status_code == 200, page
    data = admin_form_data(page)
    [row] = [form for form in members_formset(page).forms if form.instance.pk == member.pk]
    data[row.add_prefix("DELETE")] = "on"
    return url, data


def admin_remove_member(client, member):
    """Remove `member` on its session's admin page as staff do; the POST's response."""
    return client.post(*admin_member_removal(client, member))


PRESENCE = re.compile(r'<p id="presence"[^>]*>(.*?)</p>', re.S)


def here_now(frame: str) -> list[str] | None:
    """The users a portal socket frame's presence fragment ("Here now") lists, or None if it has none."""
    found = PRESENCE.search(frame)
    return re.findall(r'data-user="([^"]*)"', found.group(1)) if found else None


async def presence_until(communicator, users: list[str], *, timeout: float = 5.0) -> list[str]:
    """Receive a portal socket's frames until its presence lists exactly `users` (sorted); the frames received."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    frames = []
    while True:
        frames.append(await communicator.receive_from(timeout=max(0.0, deadline - loop.time())))
        if here_now(frames[-1]) == sorted(users):
            return frames
