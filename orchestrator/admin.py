"""The operators' view of sessions, runs and what they left behind.

Every record here is history written by the services and the engine, so the admin is read-only: nothing
can be added, changed or deleted by hand. The one write is the "Stop selected runs" action, and it goes
through `run_stop`, the same implementation behind HTTP and WebSocket (run-scoped flag, approval sweep,
executor wake-up), never a raw UPDATE.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import Model, OuterRef, Q, QuerySet, Subquery
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from .models import (
    TERMINAL_STATES,
    Approval,
    FunctionCall,
    Message,
    Run,
    Session,
    SessionMember,
    SteeringMessage,
)
from .services.runs import run_stop

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
    list_filter = ("state", "outcome", LeaseExpiredFilter, "model", "created_at", "started_at")
    # "=id" is an iexact match: safe for any search term, and hyphen-insensitive on SQLite's hex storage.
    search_fields = ("=id", "session__title", "session__owner__username")
    actions = ("stop_selected",)
    inlines = (MessageInline, FunctionCallInline, ApprovalInline)
    fieldsets = (
        (None, {"fields": ("id", "session_link", "owner", "records")}),
        ("State", {"fields": ("state", "prev_state", "outcome", "turn_count", "max_turns", "model", "error")}),
        ("Timing", {"fields": ("created_at", "started_at", "finished_at", "duration")}),
        ("Stop", {"fields": ("stop_requested_at", "stop_requested_by", "stop_reason", "stop_acknowledged_at",
                             "stop_latency")}),
        ("Lease", {"fields": ("executor_id", "lease_channel", "lease_expires_at")}),
        ("Usage", {"fields": ("input_tokens", "output_tokens", "usage_estimated", "receipt")}),
    )
    readonly_fields = ("session_link", "owner", "records", "duration", "stop_latency")

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

    @admin.action(description="Stop selected runs", permissions=("stop",))
    def stop_selected(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        # One run_stop (one transaction) per run: a failure stops only its own run's request, and each
        # result is reported as the service gave it: never a false success.
        for run_id, session_id in queryset.values_list("pk", "session_id"):
            result = run_stop(session_id=session_id, requested_by=request.user, run_id=run_id, as_admin=True)
            if result.accepted:
                suffix = f" ({result.reason})" if result.reason else ""
                self.message_user(request, f"run {run_id}: accepted{suffix}", messages.SUCCESS)
            elif result.reason == "store_unavailable":
                self.message_user(request, f"run {run_id}: not accepted ({result.reason})", messages.ERROR)
            else:
                self.message_user(request, f"run {run_id}: not accepted ({result.reason})", messages.WARNING)


# --- Sessions ----------------------------------------------------------------------------------------------


class RunInline(ReadOnlyInline):
    model = Run
    fields = ("id", "state", "outcome", "turn_count", "created_at", "finished_at")
    readonly_fields = fields
    verbose_name_plural = f"runs (latest {INLINE_LIMIT})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Run]:
        return super().get_queryset(request).order_by("-created_at")


class MemberInline(ReadOnlyInline):
    """Who the session is shared with (users and groups, with their roles): granted through the API."""

    model = SessionMember
    fields = ("user", "group", "role", "created_at")
    readonly_fields = fields
    show_change_link = False
    verbose_name_plural = "members"


@admin.register(Session)
class SessionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("title", "id", "owner", "created_at", "updated_at", "archived_at", "active_run")
    list_select_related = ("owner",)
    list_filter = ("created_at", "updated_at", ("archived_at", admin.EmptyFieldListFilter))
    search_fields = ("=id", "title", "owner__username")
    fields = ("id", "title", "owner", "model", "created_at", "updated_at", "archived_at", "all_runs")
    readonly_fields = ("all_runs",)
    inlines = (MemberInline, RunInline)

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
