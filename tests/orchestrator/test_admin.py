"""The admin: a read-only view of sessions, runs and their records (runs filterable by session owner and by
member), plus its writes, each through the services: the "Stop selected runs" action and a live run's "Stop run"
button (`run_stop`, so they behave exactly as a user's stop does, with the admin as the stop's origin, which the
run's page and receipt show), and a session's members inline (`session_member_set`/`_remove`; that a removal
closes the member's sockets is tested over real sockets in tests/harness/test_revocation.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin as django_admin
from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from orchestrator.admin import MessageInline, RunAdmin, format_ms
from orchestrator.models import (
    Approval,
    ApprovalStatus,
    FunctionCall,
    Message,
    MessageRole,
    Run,
    RunOutcome,
    RunState,
    Session,
    SessionMember,
    SteeringMessage,
)
from orchestrator.services.sessions import session_create
from tests.factories import TEAM, make_run, park_on_approval, shared_world
from tests.helpers import admin_form_data, admin_remove_member, members_formset

pytestmark = pytest.mark.django_db

RUNS_URL = reverse("admin:orchestrator_run_changelist")


def run_url(run: Run) -> str:
    return reverse("admin:orchestrator_run_change", args=[run.pk])


def listed_ids(response) -> set:
    assert response.status_code == 200, response  # a rejected lookup would redirect with ?e=1
    return {run.pk for run in response.context["cl"].queryset}


def stop(client, *runs: Run):
    """Run the action and follow its redirect, so its messages are shown (and consumed) by that page."""
    data = {"action": "stop_selected", ACTION_CHECKBOX_NAME: [str(r.pk) for r in runs]}
    return client.post(RUNS_URL, data, follow=True)


def reported(response) -> list[tuple[int, str]]:
    return [(m.level, m.message) for m in response.context["messages"]]


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="root-password-1")


@pytest.fixture
def su_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def staff_with(django_user_model, client):
    """A client logged in as a staff user holding exactly the given orchestrator permissions (called again: the
    same user, now with these)."""

    def make(*codenames: str):
        staff = django_user_model.objects.filter(username="staff").first() or django_user_model.objects.create_user(
            username="staff", password="staff-password-1", is_staff=True)
        staff.user_permissions.set(
            Permission.objects.filter(content_type__app_label="orchestrator", codename__in=codenames)
        )
        client.force_login(staff)
        return client, staff

    return make


# --- The runs changelist -----------------------------------------------------------------------------------


def test_changelist_shows_session_owner_state_and_timings(su_client, user):
    started = timezone.now() - timedelta(minutes=5)
    run = make_run(
        owner=user, state=RunState.STOPPED, title="the stopped one", outcome=RunOutcome.STOPPED, turn_count=3,
        started_at=started, finished_at=started + timedelta(milliseconds=2500),
        stop_requested_at=started + timedelta(milliseconds=2250),
    )
    response = su_client.get(RUNS_URL)
    assert listed_ids(response) == {run.pk}
    html = response.content.decode()
    assert str(run.pk) in html
    assert "the stopped one" in html and "alice" in html
    assert ">stopped<" in html  # the raw state value, as plain text
    assert "2.5 s" in html  # duration: finished - started
    assert "250 ms" in html  # stop latency: finished - stop requested


def test_duration_and_latency_formatting(user):
    model_admin = RunAdmin(Run, django_admin.site)
    now = timezone.now()
    assert format_ms(None) is None and format_ms(12.4) == "12 ms" and format_ms(1500) == "1.5 s"
    assert model_admin.duration(Run(state=RunState.PROVISIONING, max_turns=5)) is None  # not started
    running = Run(state=RunState.FUNCTION_EXECUTE, max_turns=5, started_at=now - timedelta(seconds=30))
    shown = model_admin.duration(running)
    assert shown.endswith(" s (running)") and float(shown.split()[0]) >= 30
    completed = Run(state=RunState.COMPLETED, outcome=RunOutcome.COMPLETED, max_turns=5,
                    started_at=now, finished_at=now + timedelta(milliseconds=40), stop_requested_at=now)
    assert model_admin.duration(completed) == "40 ms"
    assert model_admin.stop_latency(completed) is None  # completed despite the request: no stop latency


@pytest.fixture
def assorted_runs(user, other_user):
    now = timezone.now()
    past, future = now - timedelta(minutes=1), now + timedelta(minutes=1)
    return {
        "expired": make_run(owner=user, state=RunState.AWAITING_ASSISTANT, executor_id="w1", lease_expires_at=past),
        "held": make_run(owner=user, state=RunState.FUNCTION_EXECUTE, executor_id="w2", lease_expires_at=future),
        "parked": make_run(owner=other_user, state=RunState.AWAITING_APPROVAL),  # no lease, no expiry
        "unowned_past": make_run(owner=other_user, state=RunState.PROVISIONING, lease_expires_at=past),
        "stopped": make_run(owner=user, state=RunState.STOPPED, outcome=RunOutcome.STOPPED, executor_id="w1",
                            lease_expires_at=past),  # a stale lease on a finished run is no concern
        "completed": make_run(owner=other_user, state=RunState.COMPLETED, outcome=RunOutcome.COMPLETED),
        "failed": make_run(owner=user, state=RunState.FAILED, outcome=RunOutcome.FAILED),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"expired", "held", "parked", "unowned_past", "stopped", "completed", "failed"}),
        ({"state__exact": "awaiting_assistant"}, {"expired"}),
        ({"state__exact": "stopped"}, {"stopped"}),
        ({"outcome__exact": "completed"}, {"completed"}),
        ({"outcome__exact": "failed"}, {"failed"}),
        ({"lease_expired": "yes"}, {"expired"}),
        ({"lease_expired": "no"}, {"held", "parked", "unowned_past", "stopped", "completed", "failed"}),
        ({"lease_expired": "yes", "state__exact": "function_execute"}, set()),
    ],
)
def test_filters_narrow_the_changelist(su_client, assorted_runs, query, expected):
    assert listed_ids(su_client.get(RUNS_URL, query)) == {assorted_runs[name].pk for name in expected}


def test_date_filter_narrows_by_created_at(su_client, user):
    recent = make_run(owner=user, state=RunState.COMPLETED, outcome=RunOutcome.COMPLETED)
    make_run(owner=user, state=RunState.COMPLETED, outcome=RunOutcome.COMPLETED,
             created_at=timezone.now() - timedelta(days=30))
    # The "Past 7 days" link's parameters, built as DateFieldListFilter builds them (aware midnights).
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    query = {"created_at__gte": str(today - timedelta(days=7)), "created_at__lt": str(today + timedelta(days=1))}
    assert listed_ids(su_client.get(RUNS_URL, query)) == {recent.pk}


def test_search_by_run_id_session_title_and_owner(su_client, user, other_user):
    mine = make_run(owner=user, state=RunState.AWAITING_ASSISTANT, title="deploy the thing")
    theirs = make_run(owner=other_user, state=RunState.AWAITING_ASSISTANT, title="write a poem")
    assert listed_ids(su_client.get(RUNS_URL, {"q": str(theirs.pk)})) == {theirs.pk}
    assert listed_ids(su_client.get(RUNS_URL, {"q": "deploy"})) == {mine.pk}
    assert listed_ids(su_client.get(RUNS_URL, {"q": "mallory"})) == {theirs.pk}
    assert listed_ids(su_client.get(RUNS_URL, {"q": "not-a-uuid-nor-a-title"})) == set()


def test_changelist_queries_do_not_grow_with_rows(su_client, make_user):
    make_run(owner=make_user("owner0"), state=RunState.AWAITING_ASSISTANT)
    with CaptureQueriesContext(connection) as one_row:
        assert su_client.get(RUNS_URL).status_code == 200
    for i in range(1, 6):
        make_run(owner=make_user(f"owner{i}"), state=RunState.COMPLETED, outcome=RunOutcome.COMPLETED)
    with CaptureQueriesContext(connection) as six_rows:
        response = su_client.get(RUNS_URL)
    assert len(response.context["cl"].result_list) == 6
    assert len(six_rows.captured_queries) == len(one_row.captured_queries)


# --- The run change page -----------------------------------------------------------------------------------


@pytest.fixture
def run_with_records(user):
    approval = park_on_approval(
        session_create(owner=user, title="with records"), expires_in=timedelta(minutes=5), name="shell_tool_x",
        arguments={"cmd": "ls"}, call_id="call_1", asked="please list the files", answered="on it",
    )
    return approval.run, approval.function_call, approval


def test_change_page_shows_inlines_and_links_to_all_records(su_client, run_with_records):
    run, call, approval = run_with_records
    response = su_client.get(run_url(run))
    assert response.status_code == 200
    html = response.content.decode()
    assert "please list the files" in html and "on it" in html  # message inline
    assert "shell_tool_x" in html and "call_1" in html  # function call inline (and approval's tool)
    assert "awaiting_approval" in html
    assert f"?run__id__exact={run.pk}" in html
    assert "2 <a" in html  # "2 messages" leads to the filtered changelist
    # Read-only inlines: no rows can be added, none deleted, nothing is an input.
    for prefix in ("messages", "function_calls", "approvals"):
        assert f'name="{prefix}-MAX_NUM_FORMS" value="0"' in html
        assert f'name="{prefix}-0-DELETE"' not in html
    assert 'name="messages-0-text"' not in html and "<textarea" not in html


def test_records_link_filters_the_message_changelist(su_client, run_with_records, user):
    run, _, _ = run_with_records
    other = make_run(owner=user, state=RunState.COMPLETED, outcome=RunOutcome.COMPLETED)
    Message.objects.create(session=other.session, run=other, role=MessageRole.USER, text="another run's message")
    response = su_client.get(reverse("admin:orchestrator_message_changelist"), {"run__id__exact": str(run.pk)})
    assert response.status_code == 200
    assert {m.run_id for m in response.context["cl"].queryset} == {run.pk}
    assert response.context["cl"].queryset.count() == 2


def test_inline_shows_at_most_its_limit(su_client, user, monkeypatch):
    monkeypatch.setattr(MessageInline, "max_shown", 3)
    run = make_run(owner=user, state=RunState.AWAITING_ASSISTANT)
    Message.objects.bulk_create(
        Message(session=run.session, run=run, role=MessageRole.USER, text=f"message number {i:02d}") for i in range(5)
    )
    html = su_client.get(run_url(run)).content.decode()
    assert "message number 02" in html  # the first three, in order
    assert "message number 03" not in html and "message number 04" not in html
    assert "5 <a" in html  # the records line still counts (and links to) all of them


# --- Read-only -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [Session, Run, Message, FunctionCall, Approval, SteeringMessage])
def test_every_registered_record_is_view_only_even_for_superusers(rf, superuser, model):
    """History is read-only; a session's members are the one editable part (their own tests below)."""
    model_admin = django_admin.site._registry[model]
    request = rf.get("/")
    request.user = superuser
    assert model_admin.has_view_permission(request)
    assert not model_admin.has_add_permission(request)
    assert model_admin.has_change_permission(request) is (model is Session)  # its members inline
    assert not model_admin.has_delete_permission(request)
    for inline in model_admin.get_inline_instances(request):
        if inline.model is SessionMember:
            continue
        assert not inline.has_add_permission(request, None)
        assert not inline.has_change_permission(request)
        assert not inline.has_delete_permission(request)


def test_add_change_and_delete_are_refused(su_client, user):
    run = make_run(owner=user, state=RunState.FUNCTION_EXECUTE, turn_count=1)
    assert su_client.get(reverse("admin:orchestrator_run_add")).status_code == 403
    assert su_client.get(reverse("admin:orchestrator_session_add")).status_code == 403
    response = su_client.post(run_url(run), {"state": "completed", "turn_count": "9", "max_turns": "5"})
    assert response.status_code == 403
    assert su_client.post(reverse("admin:orchestrator_run_delete", args=[run.pk]), {"post": "yes"}).status_code == 403
    run.refresh_from_db()
    assert (run.state, run.turn_count) == (RunState.FUNCTION_EXECUTE, 1)
    # The bulk delete action is not offered either.
    assert "delete_selected" not in su_client.get(RUNS_URL).content.decode()


def test_other_admin_pages_render(su_client, run_with_records):
    run, call, approval = run_with_records
    for url in (
        reverse("admin:orchestrator_session_changelist"),
        reverse("admin:orchestrator_session_change", args=[run.session_id]),
        reverse("admin:orchestrator_approval_changelist"),
        reverse("admin:orchestrator_approval_change", args=[approval.pk]),
        reverse("admin:orchestrator_functioncall_changelist"),
        reverse("admin:orchestrator_functioncall_change", args=[call.pk]),
        reverse("admin:orchestrator_message_changelist"),
        reverse("admin:orchestrator_steeringmessage_changelist"),
    ):
        assert su_client.get(url).status_code == 200, url


def test_session_page_lists_its_runs_and_shows_the_live_one(su_client, user):
    session = session_create(owner=user, title="busy session")
    done = make_run(session, RunState.COMPLETED, outcome=RunOutcome.COMPLETED)
    live = make_run(session, RunState.FUNCTION_EXECUTE)
    html = su_client.get(reverse("admin:orchestrator_session_change", args=[session.pk])).content.decode()
    assert str(done.pk) in html and str(live.pk) in html
    assert f"?session__id__exact={session.pk}" in html and "all 2 runs" in html
    changelist = su_client.get(reverse("admin:orchestrator_session_changelist")).content.decode()
    assert f'{run_url(live)}">function_execute</a>' in changelist


def test_approval_changelist_shows_the_tool_and_filters_by_status(su_client, run_with_records, user):
    run, call, pending = run_with_records
    other = make_run(owner=user, state=RunState.COMPLETED, outcome=RunOutcome.COMPLETED)
    message = Message.objects.create(session=other.session, run=other, role=MessageRole.ASSISTANT)
    denied_call = FunctionCall.objects.create(run=other, message=message, call_id="c", name="forbidden_tool_y")
    denied = Approval.objects.create(run=other, function_call=denied_call, status=ApprovalStatus.DENIED,
                                     expires_at=timezone.now())
    url = reverse("admin:orchestrator_approval_changelist")
    response = su_client.get(url)
    assert "shell_tool_x" in response.content.decode() and "forbidden_tool_y" in response.content.decode()
    assert {a.pk for a in su_client.get(url, {"status__exact": "pending"}).context["cl"].queryset} == {pending.pk}
    assert {a.pk for a in su_client.get(url, {"status__exact": "denied"}).context["cl"].queryset} == {denied.pk}


# --- The stop action -----------------------------------------------------------------------------------------


def test_superuser_is_offered_the_stop_action(su_client, rf, superuser, user):
    make_run(owner=user, state=RunState.AWAITING_ASSISTANT)
    request = rf.get(RUNS_URL)
    request.user = superuser
    assert list(django_admin.site._registry[Run].get_actions(request)) == ["stop_selected"]
    html = su_client.get(RUNS_URL).content.decode()
    assert '<option value="stop_selected">Stop selected runs</option>' in html


def test_stop_action_stops_a_live_run_and_reports_already_stopped_for_a_finished_one(
    su_client, superuser, run_with_records, user
):
    live, call, approval = run_with_records
    finished = make_run(owner=user, state=RunState.COMPLETED, outcome=RunOutcome.COMPLETED)
    response = stop(su_client, live, finished)
    assert response.redirect_chain == [(RUNS_URL, 302)]
    assert sorted(reported(response)) == sorted([
        (messages.SUCCESS, f"run {live.pk}: accepted, prior state awaiting_approval"),
        (messages.WARNING, f"run {finished.pk}: not accepted (already_stopped), prior state completed"),
    ])
    live.refresh_from_db()
    assert live.stop_requested_at is not None and live.stop_requested_by == superuser
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.SWEPT  # the service's sweep ran with the flag
    finished.refresh_from_db()
    assert finished.stop_requested_at is None

    # A second click: the run is already stopping; it is still accepted, and says so.
    flagged_at = live.stop_requested_at
    assert reported(stop(su_client, live)) == [
        (messages.SUCCESS, f"run {live.pk}: accepted (already_stopping), prior state awaiting_approval")]
    live.refresh_from_db()
    assert live.stop_requested_at == flagged_at


def test_staff_without_the_stop_permission_can_view_but_not_stop(staff_with, user):
    run = make_run(owner=user, state=RunState.AWAITING_ASSISTANT)
    client, _ = staff_with("view_run")
    response = client.get(RUNS_URL)
    assert response.status_code == 200 and str(run.pk) in response.content.decode()
    assert "stop_selected" not in response.content.decode()
    stop(client, run)
    run.refresh_from_db()
    assert run.stop_requested_at is None


def test_staff_with_view_and_stop_permissions_stops_another_users_run(staff_with, other_user):
    run = make_run(owner=other_user, state=RunState.FUNCTION_EXECUTE)  # not the staff member's session
    client, staff = staff_with("view_run", "stop_run")
    assert "stop_selected" in client.get(RUNS_URL).content.decode()
    assert reported(stop(client, run)) == [(messages.SUCCESS, f"run {run.pk}: accepted, prior state function_execute")]
    run.refresh_from_db()
    assert run.stop_requested_at is not None and run.stop_requested_by == staff


def test_superseded_messages_are_shown_marked_and_filterable(su_client, user):
    replaced_run = make_run(owner=user, state=RunState.COMPLETED, outcome=RunOutcome.COMPLETED)
    replacing = make_run(replaced_run.session, RunState.COMPLETED, outcome=RunOutcome.COMPLETED)
    old = Message.objects.create(session=replaced_run.session, run=replaced_run, role=MessageRole.USER,
                                 text="the replaced question", superseded_at=timezone.now(), superseded_by=replacing)
    new = Message.objects.create(session=replaced_run.session, run=replacing, role=MessageRole.USER,
                                 text="the edited question")
    url = reverse("admin:orchestrator_message_changelist")
    response = su_client.get(url)
    html = response.content.decode()
    assert "the replaced question" in html and "the edited question" in html  # both kept, both visible
    assert 'alt="True"' in html and 'alt="False"' in html  # the superseded column
    assert {m.pk for m in su_client.get(url, {"superseded": "yes"}).context["cl"].queryset} == {old.pk}
    assert {m.pk for m in su_client.get(url, {"superseded": "no"}).context["cl"].queryset} == {new.pk}
    assert "the replaced question" in su_client.get(run_url(replaced_run)).content.decode()  # and in its run


def test_session_page_shows_its_members(su_client):
    world = shared_world(live=False)
    html = su_client.get(reverse("admin:orchestrator_session_change", args=[world.session.pk])).content.decode()
    for shown in ("bob", "carol", TEAM, "collaborator", "viewer"):
        assert shown in html
    archived = su_client.get(reverse("admin:orchestrator_session_changelist") + "?archived_at__isempty=0")
    assert archived.status_code == 200 and "shared session" not in archived.content.decode()


# --- Runs by session owner and by member -------------------------------------------------------------------------


@pytest.fixture
def shared_runs(make_user):
    """alice's shared session (bob, carol and the team's dave are members) and mallory's own sessions: one private,
    one shared with the team only."""
    from django.contrib.auth.models import Group

    world = shared_world(live=False)
    mallory = world.users["non_member"]
    private = make_run(owner=mallory, title="mallory's private")
    team_session = session_create(owner=mallory, title="mallory's, shared with the team")
    SessionMember.objects.create(session=team_session, group=Group.objects.get(name=TEAM), role="viewer")
    return world, {"alice's": world.run, "mallory's private": private,
                   "mallory's team": make_run(team_session, RunState.COMPLETED)}


@pytest.mark.parametrize(("param", "who", "expected"), [
    ("owner", "owner", {"alice's"}),
    ("owner", "non_member", {"mallory's private", "mallory's team"}),
    ("member", "collaborator", {"alice's"}),  # bob's own grant
    ("member", "viewer", {"alice's"}),
    ("member", "group_member", {"alice's", "mallory's team"}),  # dave, through the team
    ("member", "owner", set()),  # alice owns her session: the owner filter finds it, not the member one
    ("member", "non_member", set()),
])
def test_runs_filter_by_session_owner_and_by_member(su_client, shared_runs, param, who, expected):
    world, runs = shared_runs
    listed = listed_ids(su_client.get(RUNS_URL, {param: world.users[who].pk}))
    assert listed == {runs[name].pk for name in expected}


def test_member_filter_offers_members_and_follows_the_permission_rule(su_client, shared_runs):
    world, runs = shared_runs
    assert user_choices(su_client, "owner") == ["alice", "mallory"]
    assert user_choices(su_client, "member") == ["bob", "carol", "dave"]
    carol = world.users["viewer"]
    assert listed_ids(su_client.get(RUNS_URL, {"member": carol.pk})) == {runs["alice's"].pk}
    carol.is_active = False  # the rule: an inactive user has no role, so is a member of nothing
    carol.save()
    assert listed_ids(su_client.get(RUNS_URL, {"member": carol.pk})) == set()
    assert user_choices(su_client, "member") == ["bob", "dave"]


def user_choices(client, parameter: str) -> list[str]:
    """The names a user filter of the runs changelist offers."""
    [spec] = [s for s in client.get(RUNS_URL).context["cl"].filter_specs if getattr(s, "parameter_name", "") == parameter]
    return [name for _, name in spec.lookup_choices]


@pytest.mark.parametrize("param", ["owner", "member"])
def test_user_filters_refuse_a_malformed_value_and_find_nothing_for_an_unknown_user(su_client, shared_runs, param):
    response = su_client.get(RUNS_URL, {param: "not-a-user"})
    assert response.status_code == 302 and response["Location"].endswith("?e=1")  # Django's "bad lookup" answer
    assert listed_ids(su_client.get(RUNS_URL, {param: 10**9})) == set()


# --- The "Stop run" button on a run's page ----------------------------------------------------------------------


def stop_url(run: Run) -> str:
    return reverse("admin:orchestrator_run_stop", args=[run.pk])


def press_stop(client, run: Run):
    return client.post(stop_url(run), follow=True)


def stop_state(run: Run) -> tuple:
    run.refresh_from_db()
    return run.stop_requested_at, run.stop_requested_by_id, run.stop_reason


def test_a_live_runs_page_offers_the_stop_button_and_a_finished_ones_does_not(su_client, user):
    live = make_run(owner=user, state=RunState.FUNCTION_EXECUTE)
    finished = make_run(owner=user, state=RunState.COMPLETED)
    assert f'action="{stop_url(live)}"' in su_client.get(run_url(live)).content.decode()
    assert 'id="run-stop-form"' not in su_client.get(run_url(finished)).content.decode()


def test_the_stop_button_stops_as_the_admin_and_a_second_press_changes_nothing(staff_with, other_user):
    run = make_run(owner=other_user, state=RunState.FUNCTION_EXECUTE)  # not the staff member's session
    client, staff = staff_with("view_run", "stop_run")
    page = client.get(run_url(run)).content.decode()
    assert f'action="{stop_url(run)}"' in page and 'name="csrfmiddlewaretoken"' in page
    response = press_stop(client, run)
    assert response.redirect_chain == [(run_url(run), 302)]
    assert reported(response) == [(messages.SUCCESS, f"run {run.pk}: accepted, prior state function_execute")]
    stopped_at, by, reason = stop_state(run)
    assert stopped_at is not None and (by, reason) == (staff.pk, "admin")  # the service names the origin
    assert "stop requested by staff (admin): stopping" in response.content.decode()
    # Pressed again: accepted, already stopping; nothing recorded twice.
    assert reported(press_stop(client, run)) == [
        (messages.SUCCESS, f"run {run.pk}: accepted (already_stopping), prior state function_execute")]
    assert stop_state(run) == (stopped_at, staff.pk, "admin")


def test_the_stop_button_on_a_run_that_ended_meanwhile_says_already_stopped(su_client, user):
    run = make_run(owner=user, state=RunState.COMPLETED)  # the page was opened while it was live
    assert reported(press_stop(su_client, run)) == [
        (messages.WARNING, f"run {run.pk}: not accepted (already_stopped), prior state completed")]
    assert stop_state(run) == (None, None, "")


def test_the_stop_button_is_refused_without_the_stop_permission_to_non_staff_and_to_get(staff_with, client, user):
    run = make_run(owner=user, state=RunState.FUNCTION_EXECUTE)
    staff_client, _ = staff_with("view_run")
    assert 'id="run-stop-form"' not in staff_client.get(run_url(run)).content.decode()
    assert staff_client.post(stop_url(run)).status_code == 403
    assert staff_client.get(stop_url(run)).status_code == 405
    client.force_login(user)  # the session's owner, but not staff: the admin's login page
    response = client.post(stop_url(run))
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert stop_state(run) == (None, None, "")
    # What could have happened: the same press by staff holding the permission.
    staff_client, _ = staff_with("view_run", "stop_run")
    assert press_stop(staff_client, run).status_code == 200 and stop_state(run)[0] is not None


def test_the_stop_button_needs_the_csrf_token(superuser, user):
    from django.test import Client

    run = make_run(owner=user, state=RunState.FUNCTION_EXECUTE)
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    assert client.post(stop_url(run)).status_code == 403
    assert stop_state(run) == (None, None, "")
    token = client.get(run_url(run)).context["csrf_token"]
    assert client.post(stop_url(run), {"csrfmiddlewaretoken": str(token)}).status_code == 302
    assert stop_state(run)[0] is not None


def test_the_stop_button_for_an_unknown_run_is_no_error(su_client):
    for unknown in ("0b4a8d3e-0000-4000-8000-000000000000", "not-a-uuid"):
        response = su_client.post(reverse("admin:orchestrator_run_stop", args=[unknown]), follow=True)
        assert response.status_code == 200 and "doesn’t exist" in response.content.decode()


# --- The receipt says who stopped the run, and from where ---------------------------------------------------------


@pytest.mark.parametrize(("origin", "shown"), [("user", "stopped by alice (user)"), ("admin", "stopped by root (admin)")])
def test_the_receipt_says_whether_a_user_or_the_admin_stopped_the_run(su_client, superuser, user, origin, shown):
    from orchestrator.engine.states.tearing_down import build_receipt

    now = timezone.now()
    run = make_run(owner=user, state=RunState.STOPPED, stop_requested_at=now - timedelta(milliseconds=30),
                   stop_requested_by=superuser if origin == "admin" else user, stop_reason=origin)
    run.receipt = build_receipt(run)
    run.save()
    html = su_client.get(run_url(run)).content.decode()
    assert html.count(shown) == 2  # the Stop section, and the receipt's summary
    assert "outcome: stopped" in html


@pytest.mark.django_db(transaction=True)
async def test_stop_button_on_a_streaming_run_driven_by_the_worker(worker, session, user, superuser):
    from django.test import Client

    from tests.helpers import db, script, start, wait_terminal, wait_until

    run = await start(session, user, script({"words": 5000, "delay_ms": 5}))  # ~25 s unless stopped
    await wait_until(lambda: Message.objects.filter(run_id=run.id, role="assistant").exclude(text="").exists(),
                     what="streamed text")
    client = Client()
    await db(client.force_login, superuser)
    response = await db(client.post, stop_url(run), follow=True)
    assert reported(response) == [(messages.SUCCESS, f"run {run.pk}: accepted, prior state assistant_streaming")]
    run = await wait_terminal(run.id, timeout=5)
    assert run.outcome == "stopped"
    assert (run.receipt["stop"]["requested_by"], run.receipt["stop_reason"]) == ("root", "admin")
    page = (await db(client.get, run_url(run))).content.decode()
    assert "stopped by root (admin)" in page and 'id="run-stop-form"' not in page
    again = await db(client.post, stop_url(run), follow=True)
    assert reported(again) == [(messages.WARNING, f"run {run.pk}: not accepted (already_stopped), prior state stopped")]


# --- A session's members, edited through the members service ------------------------------------------------------


def session_url(session) -> str:
    return reverse("admin:orchestrator_session_change", args=[session.pk])


def grants(session) -> set:
    return {(m.user.username if m.user_id else f"@{m.group.name}", m.role)
            for m in SessionMember.objects.filter(session=session).select_related("user", "group")}


def row_of(page, username: str):
    return next(f for f in members_formset(page).forms if f.instance.user_id and f.instance.user.username == username)


def with_new_row(page, data: dict, **fields) -> dict:
    total = int(data["members-TOTAL_FORMS"])
    return {**data, "members-TOTAL_FORMS": str(total + 1), **{f"members-{total}-{k}": v for k, v in fields.items()}}


@pytest.fixture
def world():
    return shared_world(live=False)


ORIGINAL = {("bob", "collaborator"), ("carol", "viewer"), (f"@{TEAM}", "collaborator")}


def test_staff_change_a_role_add_and_remove_members_on_the_session_page(su_client, world):
    session = world.session
    updated_at = Session.objects.get(pk=session.pk).updated_at
    page = su_client.get(session_url(session))
    data = admin_form_data(page)
    data[row_of(page, "carol").add_prefix("role")] = "collaborator"
    data[row_of(page, "bob").add_prefix("DELETE")] = "on"
    data = with_new_row(page, data, user=world.users["non_member"].pk, role="viewer")
    response = su_client.post(session_url(session), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    assert grants(session) == {("carol", "collaborator"), ("mallory", "viewer"), (f"@{TEAM}", "collaborator")}
    assert Session.objects.get(pk=session.pk).updated_at == updated_at  # the session row itself is not written
    history = su_client.get(reverse("admin:orchestrator_session_history", args=[session.pk])).content.decode()
    for logged in ("Added session member “mallory (viewer)", "Changed Role for session member “carol (collaborator)",
                   "Deleted session member “bob (collaborator)"):
        assert logged in history  # the admin's log says who did what


def test_a_row_given_another_user_moves_the_grant(su_client, world):
    page = su_client.get(session_url(world.session))
    data = admin_form_data(page)
    data[row_of(page, "carol").add_prefix("user")] = world.users["non_member"].pk
    assert su_client.post(session_url(world.session), data).status_code == 302
    assert grants(world.session) == {("bob", "collaborator"), ("mallory", "viewer"), (f"@{TEAM}", "collaborator")}


@pytest.mark.parametrize(("row", "error"), [
    ({"user": "owner", "role": "viewer"}, "owner already has every right"),
    ({"user": "collaborator", "role": "viewer"}, "bob is listed twice"),
    ({"user": "non_member", "group": TEAM, "role": "viewer"}, "A member is a user or a group"),
    ({"role": "viewer"}, "A member is a user or a group"),
    ({"user": "non_member", "role": "owner"}, "Select a valid choice"),
])
def test_a_bad_member_row_is_a_form_error_and_changes_nothing(su_client, world, row, error):
    from django.contrib.auth.models import Group

    values = {"role": row["role"]}
    if "user" in row:
        values["user"] = world.users[row["user"]].pk
    if "group" in row:
        values["group"] = Group.objects.get(name=row["group"]).pk
    page = su_client.get(session_url(world.session))
    response = su_client.post(session_url(world.session), with_new_row(page, admin_form_data(page), **values))
    assert response.status_code == 200 and error in response.content.decode()
    assert grants(world.session) == ORIGINAL


def test_members_are_edited_with_the_sessionmember_permissions_only(staff_with, world):
    client, _ = staff_with("view_session", "view_sessionmember")
    page = client.get(session_url(world.session))
    assert page.status_code == 200 and "carol" in page.content.decode()
    assert 'name="members-0-role"' not in page.content.decode()  # shown, not editable
    data = admin_form_data(page)
    assert client.post(session_url(world.session), data).status_code == 403
    assert grants(world.session) == ORIGINAL
    client, _ = staff_with("view_session", "view_sessionmember", "delete_sessionmember")  # what could have happened
    assert admin_remove_member(client, SessionMember.objects.get(user=world.users["viewer"])).status_code == 302
    assert grants(world.session) == ORIGINAL - {("carol", "viewer")}


def test_removing_a_member_goes_through_the_service_and_its_revocation(su_client, world, monkeypatch):
    """The socket-level proof is tests/harness/test_revocation.py ("member removed in the admin"); here, that the
    admin's removal publishes the revocation after its commit."""
    from orchestrator import events

    published = []
    monkeypatch.setattr(events, "access_changed_on_commit", lambda *ids: published.append(ids))
    assert admin_remove_member(su_client, SessionMember.objects.get(user=world.users["viewer"])).status_code == 302
    assert published == [(world.session.id,)]
