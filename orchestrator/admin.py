"""The operators' view of sessions, runs and what they left behind.

Every record here is history written by the services and the engine, so the admin is read-only: nothing
can be added, changed or deleted by hand. The writes are a run's stop (the "Stop selected runs" action and
the "Stop run" button on a run's page) and a session's members (its inline), and they go through the services
behind HTTP and WebSocket — `run_stop` (run-scoped flag, approval sweep, executor wake-up, the admin named as
the stop's origin) and `session_member_set`/`_remove` (a removed member's sockets close at once) — never a raw
write. Who may do them is Django's model permissions (`orchestrator.stop_run`; add/change/delete
`sessionmember`), not a session role.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, OuterRef, Q, QuerySet, Subquery
from django.forms import ModelForm
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from . import permissions
from .models import (
    TERMINAL_STATES,
    Approval,
    FunctionCall,
    Message,
    Run,
    RunOutcome,
    Session,
    SessionMember,
    SteeringMessage,
)
from .services.errors import ServiceError
from .services.members import session_member_remove, session_member_set
from .services.runs import StopResult, run_stop

# Inlines render every row on the parent's page; a long run would make it slow, so they show this many
# and the page links to the full, filtered changelist.
INLINE_LIMIT = 50
EXCERPT_CHARS = 200


def format_ms(ms: float | None) -> str | None:
    """A duration for people: milliseconds below a second, seconds above. None shows the empty value."""
    if ms is None:
        return None
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.1f} s"


def _ms_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() * 1000


def _changelist_link(model: type[Model], lookup: str, value: Any, label: str) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return format_html('<a href="{}?{}={}">{}</a>', url, lookup, value, label)


def _change_link(obj: Model, label: str) -> str:
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label)


class ReadOnlyAdminMixin:
    """History is never hand-edited: no add, change or delete for anyone, superusers included.

    Viewing still works through Django's view permission (superusers have it), which renders the
    changelist and the change page read-only.
    """

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class CappedInlineFormSet(BaseInlineFormSet):
    """An inline formset showing at most `cap` rows (set by `ReadOnlyInline.get_formset`)."""

    cap: int = INLINE_LIMIT

    def get_queryset(self) -> QuerySet:
        # The parent's filter is applied in __init__, so slicing here (after it) is safe; the formset is
        # never bound (no change permission), so the slice is only ever read.
        if not hasattr(self, "_queryset"):
            self._queryset = super().get_queryset()[: self.cap]
        return self._queryset


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    formset = CappedInlineFormSet
    extra = 0
    can_delete = False
    show_change_link = True
    max_shown = INLINE_LIMIT

    def get_formset(self, request: HttpRequest, obj: Model | None = None, **kwargs: Any) -> type[BaseInlineFormSet]:
        formset = super().get_formset(request, obj, **kwargs)
        formset.cap = self.max_shown  # a fresh class per call, so this does not leak between requests
        return formset


# --- Runs --------------------------------------------------------------------------------------------------


def format_tokens(input_tokens: int, output_tokens: int, *, estimated: bool) -> str:
    return f"{input_tokens} / {output_tokens}" + (" (estimated)" if estimated else "")


class LeaseExpiredFilter(admin.SimpleListFilter):
    """Runs an executor held and stopped renewing: the worker's recovery scan should pick them up."""

    title = "lease expired"
    parameter_name = "lease_expired"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    @staticmethod
    def expired_q() -> Q:
        return ~Q(state__in=TERMINAL_STATES) & ~Q(executor_id="") & Q(lease_expires_at__lt=timezone.now())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run] | None:
        if self.value() == "yes":
            return queryset.filter(self.expired_q())
        if self.value() == "no":
            # exclude() negates the whole condition, NULL lease_expires_at included (those are "no").
            return queryset.exclude(self.expired_q())
        return None


class UserFilter(admin.SimpleListFilter):
    """A filter whose value is a user's primary key; a malformed one is refused as Django refuses a bad lookup."""

    def users(self) -> QuerySet:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        username = get_user_model().USERNAME_FIELD
        return [(str(pk), name) for pk, name in self.users().order_by(username).values_list("pk", username)]

    def chosen_user(self):
        model = get_user_model()
        try:
            pk = model._meta.pk.to_python(self.value())
        except ValidationError as exc:
            raise IncorrectLookupParameters(exc) from None
        return model.objects.filter(pk=pk).first()


class SessionOwnerFilter(UserFilter):
    title = "session owner"
    parameter_name = "owner"

    def users(self) -> QuerySet:
        return get_user_model().objects.filter(agent_sessions__isnull=False).distinct()

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run] | None:
        if self.value() is None:
            return None
        return queryset.filter(session__owner=self.chosen_user())


class SessionMemberFilter(UserFilter):
    """Runs of the sessions a user is a member of, by their own grant or through a group: the permission rule's
    answer (`permissions.member_sessions`), so an inactive user is a member of nothing."""

    title = "session member (own or group grant)"
    parameter_name = "member"

    def users(self) -> QuerySet:
        return permissions.members()

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run] | None:
        if self.value() is None:
            return None
        user = self.chosen_user()
        return queryset.filter(session__in=permissions.member_sessions(user)) if user else queryset.none()


def stop_origin_text(*, requested: bool, requested_by: str | None, reason: str | None, outcome: str,
                     terminal: bool) -> str | None:
    """Who stopped a run and from where: "stopped by root (admin)", "stopped by alice (user)"; "stop requested by …"
    while the run is live or when it ended otherwise. From a run's fields or its receipt (the same values: the
    stop service records the origin as the reason, `admin` or `user`)."""
    if reason == "max_turns":
        return "stopped at the turn limit (max_turns)"
    if not requested:
        return None
    who = f"{requested_by or 'a deleted user'} ({'admin' if reason == 'admin' else 'user'})"
    if outcome == RunOutcome.STOPPED:
        return f"stopped by {who}"
    if not terminal:
        return f"stop requested by {who}: stopping"
    return f"stop requested by {who}; the run ended {outcome} first"


def stop_result_text(run_id, result: StopResult) -> tuple[int, str]:
    """The typed stop result {accepted, reason, prior_state} as an admin message and its level."""
    text = f"run {run_id}: {'accepted' if result.accepted else 'not accepted'}"
    text += f" ({result.reason})" if result.reason else ""
    text += f", prior state {result.prior_state}" if result.prior_state else ""
    if result.accepted:
        return messages.SUCCESS, text
    return (messages.ERROR if result.reason == "store_unavailable" else messages.WARNING), text


class SupersededColumn:
    @admin.display(description="superseded", boolean=True)
    def superseded(self, obj: Message) -> bool:
        return obj.superseded_at is not None


class SupersededFilter(admin.SimpleListFilter):
    """Messages an edit or a regeneration replaced: kept here, hidden from the transcript and the model."""

    title = "superseded"
    parameter_name = "superseded"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message] | None:
        if self.value() in ("yes", "no"):
            return queryset.filter(superseded_at__isnull=self.value() == "no")
        return None


class MessageInline(SupersededColumn, ReadOnlyInline):
    model = Message
    fk_name = "run"
    fields = ("id", "role", "status", "superseded", "text_excerpt", "tool_call", "tokens", "created_at")
    readonly_fields = fields
    verbose_name_plural = f"messages (first {INLINE_LIMIT})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).select_related("function_call").order_by("id")

    @admin.display(description="text")
    def text_excerpt(self, obj: Message) -> str:
        return Truncator(obj.text).chars(EXCERPT_CHARS)

    @admin.display(description="answers call")
    def tool_call(self, obj: Message) -> str | None:
        return obj.function_call.call_id if obj.function_call else None

    @admin.display(description="tokens in / out")
    def tokens(self, obj: Message) -> str | None:
        if obj.output_tokens is None:
            return None
        return format_tokens(obj.input_tokens or 0, obj.output_tokens, estimated=obj.usage_estimated)


class FunctionCallInline(ReadOnlyInline):
    model = FunctionCall
    fields = ("position", "call_id", "name", "status", "arguments", "result_excerpt", "started_at", "finished_at")
    readonly_fields = fields
    verbose_name_plural = f"function calls (first {INLINE_LIMIT})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[FunctionCall]:
        return super().get_queryset(request).order_by("created_at", "position")

    @admin.display(description="result")
    def result_excerpt(self, obj: FunctionCall) -> str:
        return Truncator(obj.result).chars(EXCERPT_CHARS)


class ApprovalInline(ReadOnlyInline):
    model = Approval
    fields = ("tool", "status", "reason", "decided_by", "decided_at", "expires_at")
    readonly_fields = fields
    verbose_name_plural = f"approvals (first {INLINE_LIMIT})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Approval]:
        return super().get_queryset(request).select_related("function_call", "decided_by").order_by("created_at")

    @admin.display(description="tool")
    def tool(self, obj: Approval) -> str:
        return obj.function_call.name


@admin.register(Run)
class RunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "session_link",
        "owner",
        "state_text",
        "outcome_text",
        "turn_count",
        "model",
        "tokens",
        "started",
        "duration",
        "stop_latency",
    )
    # The changelist follows session → owner on every row; one JOIN instead of two queries per row.
    list_select_related = ("session", "session__owner")
    list_filter = ("state", "outcome", LeaseExpiredFilter, SessionOwnerFilter, SessionMemberFilter, "model",
                   "created_at", "started_at")
    # "=id" is an iexact match: safe for any search term, and hyphen-insensitive on SQLite's hex storage.
    search_fields = ("=id", "session__title", "session__owner__username")
    actions = ("stop_selected",)
    inlines = (MessageInline, FunctionCallInline, ApprovalInline)
    fieldsets = (
        (None, {"fields": ("id", "session_link", "owner", "records")}),
        ("State", {"fields": ("state", "prev_state", "outcome", "turn_count", "max_turns", "model", "error")}),
        ("Timing", {"fields": ("created_at", "started_at", "finished_at", "duration")}),
        ("Stop", {"fields": ("stop_origin", "stop_requested_at", "stop_requested_by", "stop_reason",
                             "stop_acknowledged_at", "stop_latency")}),
        ("Lease", {"fields": ("executor_id", "lease_channel", "lease_expires_at")}),
        ("Usage", {"fields": ("input_tokens", "output_tokens", "usage_estimated")}),
        ("Receipt", {"fields": ("receipt_summary", "receipt")}),
    )
    readonly_fields = ("session_link", "owner", "records", "duration", "stop_latency", "stop_origin",
                       "receipt_summary")

    @admin.display(description="session", ordering="session__title")
    def session_link(self, obj: Run) -> str:
        return _change_link(obj.session, obj.session.title)

    @admin.display(description="owner", ordering="session__owner__username")
    def owner(self, obj: Run) -> str:
        return obj.session.owner.get_username()

    # The raw values, as the API, events and logs spell them (the choice labels would differ).
    @admin.display(description="state", ordering="state")
    def state_text(self, obj: Run) -> str:
        return obj.state

    @admin.display(description="outcome", ordering="outcome")
    def outcome_text(self, obj: Run) -> str | None:
        return obj.outcome or None

    @admin.display(description="tokens in / out")
    def tokens(self, obj: Run) -> str:
        return format_tokens(obj.input_tokens, obj.output_tokens, estimated=obj.usage_estimated)

    @admin.display(description="started", ordering="started_at")
    def started(self, obj: Run) -> datetime | None:
        return obj.started_at

    @admin.display(description="duration")
    def duration(self, obj: Run) -> str | None:
        if obj.started_at is None:
            return None
        if obj.finished_at is not None:
            return format_ms(_ms_between(obj.started_at, obj.finished_at))
        if obj.is_terminal:  # ended without a finish time: nothing honest to show
            return None
        return f"{format_ms(_ms_between(obj.started_at, timezone.now()))} (running)"

    @admin.display(description="stop latency")
    def stop_latency(self, obj: Run) -> str | None:
        return format_ms(obj.stop_latency_ms)

    @admin.display(description="stop")
    def stop_origin(self, obj: Run) -> str | None:
        by = obj.stop_requested_by.get_username() if obj.stop_requested_by else None
        return stop_origin_text(requested=obj.stop_requested, requested_by=by, reason=obj.stop_reason,
                                outcome=obj.outcome, terminal=obj.is_terminal)

    @admin.display(description="summary")
    def receipt_summary(self, obj: Run) -> str | None:
        """The receipt for people: the outcome, who stopped the run and from where (a user or the admin), the calls
        by what they may have done. The raw receipt (the API's) is below it."""
        receipt = obj.receipt
        if not receipt:
            return None
        stop = receipt.get("stop") or {}
        lines = [("outcome", receipt.get("outcome")),
                 ("stop", stop_origin_text(requested=bool(stop), requested_by=stop.get("requested_by"),
                                           reason=receipt.get("stop_reason"), outcome=receipt.get("outcome"),
                                           terminal=True)),
                 ("stop latency", format_ms(stop.get("latency_ms")))]
        for key, label in (("completed_calls", "completed calls"), ("cancelled_calls", "cancelled calls"),
                           ("partly_run_calls", "may have partly run")):
            if receipt.get(key):
                lines.append((label, ", ".join(f"{c['name']} ({c['status']})" for c in receipt[key])))
        lines.append(("error", receipt.get("error")))
        return format_html_join(mark_safe("<br>"), "{}: {}", [line for line in lines if line[1]])

    @admin.display(description="records")
    def records(self, obj: Run) -> str:
        # The inlines stop at INLINE_LIMIT rows; these lead to everything the run wrote.
        links = [
            (_changelist_link(Message, "run__id__exact", obj.pk, "messages"), obj.messages.count()),
            (_changelist_link(FunctionCall, "run__id__exact", obj.pk, "function calls"), obj.function_calls.count()),
            (_changelist_link(Approval, "run__id__exact", obj.pk, "approvals"), obj.approvals.count()),
        ]
        return format_html_join(" · ", "{1} {0}", links)

    def has_stop_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.stop_run")

    def _stop(self, request: HttpRequest, run_id, session_id) -> None:
        """One run_stop (one transaction), the admin as requester and origin; its result reported as the service
        gave it: never a false success."""
        result = run_stop(session_id=session_id, requested_by=request.user, run_id=run_id, as_admin=True)
        level, text = stop_result_text(run_id, result)
        self.message_user(request, text, level)

    @admin.action(description="Stop selected runs", permissions=("stop",))
    def stop_selected(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        # A failure stops only its own run's request.
        for run_id, session_id in queryset.values_list("pk", "session_id"):
            self._stop(request, run_id, session_id)

    def get_urls(self) -> list[URLPattern]:
        # Before the defaults: their "<path:object_id>/" would take ".../stop/" too.
        stop = path("<path:object_id>/stop/", self.admin_site.admin_view(self.stop_view),
                    name=f"{self.opts.app_label}_{self.opts.model_name}_stop")
        return [stop, *super().get_urls()]

    def stop_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The run page's "Stop run" button: POST (with CSRF, `admin_view`), for staff who may view the run and
        hold `stop_run`; back to the run's page with the result."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run = self.get_object(request, unquote(object_id))
        if run is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not (self.has_view_permission(request, run) and self.has_stop_permission(request)):
            raise PermissionDenied
        self._stop(request, run.pk, run.session_id)
        return HttpResponseRedirect(reverse("admin:orchestrator_run_change", args=[run.pk]))

    def render_change_form(self, request: HttpRequest, context: dict, add: bool = False, change: bool = False,
                           form_url: str = "", obj: Run | None = None) -> HttpResponse:
        # The button is offered for a live run only (a finished one would answer already_stopped).
        if obj is not None and not obj.is_terminal and self.has_stop_permission(request):
            context["stop_url"] = reverse("admin:orchestrator_run_stop", args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)


# --- Sessions ----------------------------------------------------------------------------------------------


class RunInline(ReadOnlyInline):
    model = Run
    fields = ("id", "state", "outcome", "turn_count", "created_at", "finished_at")
    readonly_fields = fields
    verbose_name_plural = f"runs (latest {INLINE_LIMIT})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Run]:
        return super().get_queryset(request).order_by("-created_at")


MEMBER_PERMISSIONS = ("add", "change", "delete")


def grantee(member: SessionMember) -> tuple[str, str]:
    """A member as the members service names it: ("user", username) or ("group", name)."""
    if member.user_id is not None:
        return "user", member.user.get_username()
    return "group", member.group.name


class MemberFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        seen: set[tuple[str, object]] = set()
        for form in self.forms:
            if self._should_delete_form(form) or not getattr(form, "cleaned_data", None):
                continue
            for kind in ("user", "group"):
                # A row the staff member may not change keeps its initial values (the primary keys) as cleaned_data.
                if (chosen := form.cleaned_data.get(kind)) is not None:
                    key = (kind, getattr(chosen, "pk", chosen))
                    if key in seen:
                        raise ValidationError(f"{chosen} is listed twice: a {kind} has one role on a session.")
                    seen.add(key)


class MemberInline(admin.TabularInline):
    """Who the session is shared with (users and groups, with their roles). Staff edit it with Django's
    sessionmember permissions; `SessionAdmin.save_formset` writes through the members service."""

    model = SessionMember
    formset = MemberFormSet
    fields = ("user", "group", "role", "created_at")
    readonly_fields = ("created_at",)
    extra = 0
    verbose_name_plural = "members"

    def formfield_for_dbfield(self, db_field, request: HttpRequest, **kwargs: Any):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None and isinstance(field.widget, RelatedFieldWidgetWrapper):
            # A member is chosen here, not created or edited: no links off to the users' and groups' pages.
            field.widget.can_add_related = field.widget.can_change_related = field.widget.can_view_related = False
        return field


@admin.register(Session)
class SessionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only but for its members: the page is "changed" only through its members inline."""

    list_display = ("title", "id", "owner", "created_at", "updated_at", "archived_at", "active_run")
    list_select_related = ("owner",)
    list_filter = ("created_at", "updated_at", ("archived_at", admin.EmptyFieldListFilter))
    search_fields = ("=id", "title", "owner__username")
    fields = ("id", "title", "owner", "model", "created_at", "updated_at", "archived_at", "all_runs")
    readonly_fields = fields
    inlines = (MemberInline, RunInline)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Editing members is the only change; it needs seeing sessions too (change implies view in Django).
        return request.user.has_perm("orchestrator.view_session") and any(
            request.user.has_perm(f"orchestrator.{p}_sessionmember") for p in MEMBER_PERMISSIONS)

    def save_model(self, request: HttpRequest, obj: Session, form: ModelForm, change: bool) -> None:
        pass  # every field is read-only: the session row is not written

    def save_formset(self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool) -> None:
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        if formset.model is SessionMember:
            self._save_members(request, form.instance, formset)

    def _save_members(self, request: HttpRequest, session: Session, formset: BaseInlineFormSet) -> None:
        """Through the members service, so a removal closes the sockets it leaves without a role (after the
        admin's transaction commits). Removals first, so a grantee removed and added again in one save ends
        granted."""
        before = {m.pk: m for m in SessionMember.objects.filter(session=session).select_related("user", "group")}
        kept = [f for f in formset.initial_forms if f not in formset.deleted_forms and f.has_changed()]
        added = [f for f in formset.extra_forms if f.has_changed() and f not in formset.deleted_forms]
        try:
            for f in formset.deleted_forms:
                if (old := before.get(f.instance.pk)) is not None:
                    self._remove(request, session, old)
                    formset.deleted_objects.append(old)
            for f in kept:
                old, new = before.get(f.instance.pk), f.instance
                if old is not None and grantee(old) != grantee(new):
                    self._remove(request, session, old)  # the row names someone else now
                formset.changed_objects.append((self._set(request, session, new), f.changed_data))
            for f in added:
                formset.new_objects.append(self._set(request, session, f.instance))
        except ServiceError as exc:  # a user or group renamed or deleted since the form was read
            self.message_user(request, f"members not all saved: {exc.detail}", messages.ERROR)

    @staticmethod
    def _set(request: HttpRequest, session: Session, member: SessionMember) -> SessionMember:
        kind, name = grantee(member)
        return session_member_set(session_id=session.pk, user=request.user, kind=kind, name=name, role=member.role,
                                  as_admin=True)

    @staticmethod
    def _remove(request: HttpRequest, session: Session, member: SessionMember) -> None:
        kind, name = grantee(member)
        session_member_remove(session_id=session.pk, user=request.user, kind=kind, name=name, as_admin=True)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Session]:
        # The live run (at most one per session) comes with each row, not from a query per row.
        live = Run.objects.filter(session=OuterRef("pk")).exclude(state__in=TERMINAL_STATES)
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .annotate(live_run_id=Subquery(live.values("id")[:1]), live_run_state=Subquery(live.values("state")[:1]))
        )

    @admin.display(description="active run")
    def active_run(self, obj: Session) -> str | None:
        if obj.live_run_id is None:
            return None
        url = reverse("admin:orchestrator_run_change", args=[obj.live_run_id])
        return format_html('<a href="{}">{}</a>', url, obj.live_run_state)

    @admin.display(description="runs")
    def all_runs(self, obj: Session) -> str:
        return _changelist_link(Run, "session__id__exact", obj.pk, f"all {obj.runs.count()} runs")


# --- What runs leave behind --------------------------------------------------------------------------------


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "run", "tool", "status", "decided_by", "decided_at", "expires_at")
    list_select_related = ("run", "function_call", "decided_by")
    list_filter = ("status", "expires_at")
    search_fields = ("=id", "=run__id", "function_call__name")

    @admin.display(description="tool", ordering="function_call__name")
    def tool(self, obj: Approval) -> str:
        return obj.function_call.name


@admin.register(FunctionCall)
class FunctionCallAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("name", "call_id", "run", "status", "created_at", "duration")
    list_select_related = ("run",)
    list_filter = ("status", "created_at")
    search_fields = ("=id", "=run__id", "call_id", "name")

    @admin.display(description="duration")
    def duration(self, obj: FunctionCall) -> str | None:
        if obj.started_at is None or obj.finished_at is None:
            return None
        return format_ms(_ms_between(obj.started_at, obj.finished_at))


@admin.register(Message)
class MessageAdmin(SupersededColumn, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "session", "run", "role", "status", "superseded", "superseded_by", "text_excerpt",
                    "created_at")
    list_select_related = ("session", "run", "superseded_by")
    list_filter = ("role", "status", SupersededFilter, "created_at")
    search_fields = ("=run__id", "=session__id", "text")
    @admin.display(description="text")
    def text_excerpt(self, obj: Message) -> str:
        return Truncator(obj.text).chars(80)


@admin.register(SteeringMessage)
class SteeringMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "run", "status", "reason", "created_by", "created_at", "resolved_at")
    list_select_related = ("run", "created_by")
    list_filter = ("status",)
    search_fields = ("=run__id", "text")
