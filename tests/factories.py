"""Records written straight to the database, as the engine would leave them, for tests that need a run in a
given state without a worker driving it there: `make_run`, `add_calls`, `park_on_approval` and
`add_messages` (a long session's history, in bulk).

Plain functions (synchronous: from async tests, call them through `tests.helpers.db`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from orchestrator.models import (
    TERMINAL_STATES,
    Approval,
    CallStatus,
    FunctionCall,
    Message,
    MessageRole,
    Run,
    RunState,
    Session,
)
from orchestrator.services.sessions import session_create

# How long `make_run(leased_by=...)` holds the run's lease: far longer than any test.
LEASE = timedelta(minutes=5)


def make_run(
    session: Session | None = None,
    state: str = RunState.COMPLETED,
    *,
    owner: Any = None,
    title: str = "a session",
    max_turns: int = 5,
    leased_by: str = "",
    stopped_by: Any = None,
    **fields: Any,
) -> Run:
    """A run in `state`, written directly (no service, no worker).

    In `session`, or — given `owner` instead — in a new session of theirs titled `title` (the database allows
    one non-terminal run per session). Created now unless `created_at` is given; a terminal run gets its
    outcome (the state's name) and finish time unless given. `leased_by` makes that executor hold the run's
    lease; `stopped_by` (a user) has asked it to stop now. Any other field is passed on to
    `Run.objects.create`.
    """
    now = timezone.now()
    if session is None:
        session = session_create(owner=owner, title=title)
    terminal = state in TERMINAL_STATES
    fields.setdefault("outcome", state if terminal else "")
    fields.setdefault("finished_at", now if terminal else None)
    fields.setdefault("created_at", now)
    if leased_by:
        fields.update(executor_id=leased_by, lease_expires_at=now + LEASE)
    if stopped_by is not None:
        fields.update(stop_requested_at=now, stop_requested_by=stopped_by)
    return Run.objects.create(session=session, state=state, max_turns=max_turns, **fields)


def add_calls(run: Run, *specs: tuple[str, dict], status: str = CallStatus.PENDING) -> list[FunctionCall]:
    """One assistant message ("calling") with a call per (tool name, arguments) spec: call ids c0, c1, …"""
    message = Message.objects.create(session_id=run.session_id, run=run, role=MessageRole.ASSISTANT, text="calling")
    return [
        FunctionCall.objects.create(run=run, message=message, call_id=f"c{i}", position=i, name=name, arguments=args,
                                    status=status)
        for i, (name, args) in enumerate(specs)
    ]


def park_on_approval(
    session: Session,
    *,
    expires_in: timedelta = timedelta(minutes=10),
    name: str = "shell",
    arguments: dict | None = None,
    call_id: str = "call_t1_0",
    asked: str = "list the files",
    answered: str = "",
    **run_fields: Any,
) -> Approval:
    """A run parked on a pending approval, as the engine leaves it in `awaiting_approval` after its first
    turn: the user's message (`asked`), the assistant's (`answered`) with one call awaiting approval —
    `shell` with {"command": "ls"} unless told otherwise — and its approval, expiring `expires_in` from now
    (negative: already overdue). Nobody holds the run's lease unless `leased_by` says so: any other keyword
    is passed on to `make_run`. The run is `approval.run`, the call `approval.function_call`."""
    now = timezone.now()
    run_fields = {"prev_state": RunState.FUNCTION_PREPARE, "turn_count": 1, "started_at": now, **run_fields}
    run = make_run(session, RunState.AWAITING_APPROVAL, **run_fields)
    Message.objects.create(session=session, run=run, role=MessageRole.USER, text=asked)
    assistant = Message.objects.create(session=session, run=run, role=MessageRole.ASSISTANT, text=answered)
    call = FunctionCall.objects.create(
        run=run, message=assistant, call_id=call_id, name=name,
        arguments={"command": "ls"} if arguments is None else arguments, status=CallStatus.AWAITING_APPROVAL,
    )
    return Approval.objects.create(run=run, function_call=call, expires_at=now + expires_in)


def add_messages(session: Session, count: int, *, text: str = "message {n}") -> list[Message]:
    """`count` completed messages in `session`, user and assistant in turn (numbered from 1 in `text`), written
    in bulk: a session with a long history, without a run per exchange. Their ids ascend in order."""
    roles = (MessageRole.USER, MessageRole.ASSISTANT)
    Message.objects.bulk_create(
        Message(session=session, role=roles[n % 2], text=text.format(n=n + 1)) for n in range(count)
    )
    return list(Message.objects.filter(session=session).order_by("-id")[:count])[::-1]


# --- sharing (issue #12) -------------------------------------------------------------------------------------

# Who is who around a shared session: the owner, a collaborator and a viewer by their own grants, a member of a
# group that has the collaborator role, and a user with no role at all.
SHARED_ROLES = {"owner": "alice", "collaborator": "bob", "viewer": "carol", "group_member": "dave",
                "non_member": "mallory"}
TEAM = "platform"


@dataclass
class SharedWorld:
    session: Session
    users: dict[str, Any]  # by SHARED_ROLES key
    run: Run  # the session's latest run (live and parked on `approval` when the world is live)
    approval: Approval | None
    latest_user_message: Message


def shared_world(*, live: bool) -> SharedWorld:
    """A session of alice's shared as SHARED_ROLES says, with one answered turn and — `live` — a second run
    parked on a pending approval (nobody holds its lease)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from orchestrator.models import SessionMember

    users = {role: get_user_model().objects.create_user(username=name, password=f"{name}-password-1")
             for role, name in SHARED_ROLES.items()}
    team = Group.objects.create(name=TEAM)
    users["group_member"].groups.add(team)
    session = session_create(owner=users["owner"], title="shared session")
    SessionMember.objects.create(session=session, user=users["collaborator"], role="collaborator")
    SessionMember.objects.create(session=session, user=users["viewer"], role="viewer")
    SessionMember.objects.create(session=session, group=team, role="collaborator")
    earlier = timezone.now() - timedelta(minutes=5)
    run = make_run(session, created_at=earlier, started_by=users["owner"])
    question = Message.objects.create(session=session, run=run, role=MessageRole.USER, text="first question",
                                      author=users["owner"])
    Message.objects.create(session=session, run=run, role=MessageRole.ASSISTANT, text="first answer")
    approval = None
    if live:
        approval = park_on_approval(session, started_by=users["owner"])
        run = approval.run
        question = Message.objects.filter(run=run, role=MessageRole.USER).get()
    return SharedWorld(session=session, users=users, run=run, approval=approval, latest_user_message=question)


def session_state(session_id) -> tuple:
    """Everything a command could change about a session, to compare before and after a refused one."""
    from orchestrator.models import SessionMember, SteeringMessage

    session = Session.objects.filter(pk=session_id).values(
        "title", "title_chosen", "model", "archived_at", "updated_at").first()
    return (
        session,
        sorted(SessionMember.objects.filter(session_id=session_id).values_list("user_id", "group_id", "role"), key=str),
        list(Run.objects.filter(session_id=session_id).order_by("created_at").values_list(
            "id", "state", "stop_requested_at")),
        list(Message.objects.filter(session_id=session_id).order_by("id").values_list("id", "text", "superseded_at")),
        list(SteeringMessage.objects.filter(session_id=session_id).values_list("id", "status")),
        list(Approval.objects.filter(run__session_id=session_id).values_list("id", "status", "decided_by_id")),
        list(FunctionCall.objects.filter(run__session_id=session_id).values_list("id", "status")),
    )
