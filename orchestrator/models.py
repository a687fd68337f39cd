"""What a run leaves behind: the database is the truth about every session, run, message and call.

Services (`orchestrator.services`) are the only writers; the engine writes through its state handlers.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone


class RunState(models.TextChoices):
    PROVISIONING = "provisioning"
    AWAITING_ASSISTANT = "awaiting_assistant"
    ASSISTANT_STREAMING = "assistant_streaming"
    ASSISTANT_FINISHED = "assistant_finished"
    FUNCTION_PREPARE = "function_prepare"
    AWAITING_APPROVAL = "awaiting_approval"
    FUNCTION_EXECUTE = "function_execute"
    FUNCTION_FINALIZE = "function_finalize"
    STEERING_CHECK = "steering_check"
    TEARING_DOWN = "tearing_down"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"


TERMINAL_STATES = frozenset({RunState.COMPLETED, RunState.STOPPED, RunState.FAILED})


class RunOutcome(models.TextChoices):
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"


class MessageRole(models.TextChoices):
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"
    SYSTEM = "system"
    # A note shown in the transcript AND sent to the model (as a user-role message in brackets): a file uploaded
    # into the workspace ("uploaded report.csv, 12 KB"). Outside any run; `author` is who caused it.
    NOTE = "note"


class MessageStatus(models.TextChoices):
    STREAMING = "streaming"
    COMPLETE = "complete"
    STOPPED = "stopped"
    ERROR = "error"


class CallStatus(models.TextChoices):
    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    DENIED = "denied"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


# A call in one of these states has its result; the others still owe the model one.
CALL_FINISHED_STATES = frozenset(
    {CallStatus.DENIED, CallStatus.SUCCEEDED, CallStatus.FAILED, CallStatus.CANCELLED, CallStatus.INTERRUPTED}
)


class ApprovalStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    SWEPT = "swept"
    EXPIRED = "expired"


class SteeringStatus(models.TextChoices):
    QUEUED = "queued"
    APPLIED = "applied"
    DISCARDED = "discarded"


class Session(models.Model):
    """Its owner and its members (`SessionMember`); who may do what is `orchestrator/permissions.py`'s."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_sessions")
    title = models.CharField(max_length=200, default="New session")
    # The user chose the title (even "New session"): the first run's message does not replace it.
    title_chosen = models.BooleanField(default=False)
    # A model id from HARNESS_MODELS (orchestrator/providers/catalog.py); blank: the deployment's default.
    model = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    # Archived by its owner: left out of session lists unless asked for (`archived=true`); still usable.
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["owner", "-updated_at"]),
            # Session lists (`GET /api/sessions`): newest activity first, the id breaking ties (the cursor).
            models.Index(fields=["-updated_at", "-id"], name="session_activity_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.id})"


class MemberRole(models.TextChoices):
    VIEWER = "viewer"
    COLLABORATOR = "collaborator"


class SessionMember(models.Model):
    """A grant on a session to a user or to a Django group (a team), with a role. The owner is never one.
    What a role allows is decided in one place: `orchestrator/permissions.py`."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="session_grants")
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="session_grants")
    role = models.CharField(max_length=16, choices=MemberRole.choices)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False, group__isnull=True) | Q(user__isnull=True, group__isnull=False)),
                name="member_is_user_or_group",
                violation_error_message="A member is a user or a group: choose one of them, not both.",
            ),
            models.UniqueConstraint(fields=["session", "user"], condition=Q(user__isnull=False),
                                    name="one_grant_per_user"),
            models.UniqueConstraint(fields=["session", "group"], condition=Q(group__isnull=False),
                                    name="one_grant_per_group"),
        ]

    def __str__(self) -> str:
        return f"{self.user or self.group} ({self.role}) on {self.session_id}"

    def clean(self) -> None:
        """Form validation (the admin's members inline): the owner already has every right. The services say the
        same in the API's words (`owner_is_member`)."""
        if self.user_id is not None and self.session_id is not None and self.user_id == self.session.owner_id:
            raise ValidationError({"user": "The session's owner already has every right: they cannot be a member."})


class RunQuerySet(models.QuerySet):
    def newest_first(self) -> RunQuerySet:
        """A session's latest run is the first of these (at most one run of a session is live, the latest)."""
        return self.order_by("-created_at")


class Run(models.Model):
    """The turn record. Its `state` column is the truth; the lease says who may drive it."""

    objects = RunQuerySet.as_manager()

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="runs")
    state = models.CharField(max_length=32, choices=RunState.choices, default=RunState.PROVISIONING)
    prev_state = models.CharField(max_length=32, choices=RunState.choices, blank=True, default="")
    outcome = models.CharField(max_length=16, choices=RunOutcome.choices, blank=True, default="")
    turn_count = models.PositiveIntegerField(default=0)
    max_turns = models.PositiveIntegerField()
    error = models.TextField(blank=True, default="")
    # The model id this run talks to, fixed when it starts (a session's choice may change later).
    model = models.CharField(max_length=300, blank=True, default="")
    # Who sent the message that started it (the owner or a collaborator).
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # The stop flag is run-scoped: nothing ever clears it, and a new run starts with its own.
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    stop_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stop_reason = models.CharField(max_length=64, blank=True, default="")
    # When the executor first acted on the stop flag; with stop_requested_at and finished_at these are the
    # stop timings (requested → accepted → terminal).
    stop_acknowledged_at = models.DateTimeField(null=True, blank=True)
    # The state the run was in when the stop was requested (the stop's `prior_state`; a metric's label).
    stop_prior_state = models.CharField(max_length=32, blank=True, default="")

    # Exactly one executor drives a run: the holder of an unexpired lease (taken by conditional UPDATE).
    executor_id = models.CharField(max_length=128, blank=True, default="")
    lease_channel = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # How many times an executor took the run over from one whose lease lapsed (a crash or a hang).
    resume_count = models.PositiveIntegerField(default=0)

    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False)
    receipt = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # At most one run in flight per session: the database, not a read-then-write, enforces it.
            models.UniqueConstraint(
                fields=["session"],
                condition=~Q(state__in=sorted(s.value for s in TERMINAL_STATES)),
                name="one_active_run_per_session",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "lease_expires_at"]),
            models.Index(fields=["session", "-created_at"]),
        ]
        permissions = [("stop_run", "Can stop runs")]

    def __str__(self) -> str:
        return f"run {self.id} [{self.state}]"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def stop_requested(self) -> bool:
        return self.stop_requested_at is not None

    @property
    def stop_latency_ms(self) -> float | None:
        if self.stop_requested_at and self.finished_at and self.outcome == RunOutcome.STOPPED:
            return round((self.finished_at - self.stop_requested_at).total_seconds() * 1000, 3)
        return None


class MessageQuerySet(models.QuerySet):
    def current(self) -> MessageQuerySet:
        """Messages not superseded by an edit or a regeneration: the transcript and the model's input."""
        return self.filter(superseded_at__isnull=True)

    def latest_user(self, session_id) -> Message | None:
        """The session's latest current user message: the one an edit or a regeneration may replace."""
        return self.current().filter(session_id=session_id, role=MessageRole.USER).order_by("-id").first()


class Message(models.Model):
    objects = MessageQuerySet.as_manager()

    # An integer key: messages of a session are ordered by it (they are written one at a time under the
    # run's lock), and clients merge streaming deltas by it.
    id = models.BigAutoField(primary_key=True)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="messages")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    text = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=MessageStatus.choices, default=MessageStatus.COMPLETE)
    # Who wrote a user message (a steering message's sender once applied) or caused a note (an uploader); None
    # for every other role.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A tool message answers exactly one function call.
    function_call = models.OneToOneField(
        "FunctionCall", null=True, blank=True, on_delete=models.CASCADE, related_name="result_message"
    )
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage_estimated = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    # Replaced by an edit or a regeneration (`run_start(replace_from_message=...)`): kept for the record (the
    # admin shows it), hidden from the transcript, the snapshot and the model's input.
    superseded_at = models.DateTimeField(null=True, blank=True)
    superseded_by = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="superseded_messages"
    )

    class Meta:
        ordering = ["id"]
        # A transcript page is the newest messages of a session below an id (selectors.transcript_page).
        indexes = [models.Index(fields=["session", "-id"], name="message_session_newest")]

    def __str__(self) -> str:
        return f"{self.role} message {self.id} [{self.status}]"


class FunctionCall(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="function_calls")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="function_calls")
    call_id = models.CharField(max_length=128)
    position = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=128)
    arguments = models.JSONField(default=dict)
    status = models.CharField(max_length=24, choices=CallStatus.choices, default=CallStatus.PENDING)
    result = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "call_id"], name="unique_call_id_per_run")]

    def __str__(self) -> str:
        return f"{self.name} ({self.call_id}) [{self.status}]"

    @property
    def has_result(self) -> bool:
        return self.status in CALL_FINISHED_STATES


class Approval(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="approvals")
    function_call = models.OneToOneField(FunctionCall, on_delete=models.CASCADE, related_name="approval")
    status = models.CharField(max_length=16, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"approval {self.id} [{self.status}]"


class SteeringMessage(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="steering_messages")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steering_messages")
    text = models.TextField()
    status = models.CharField(max_length=16, choices=SteeringStatus.choices, default=SteeringStatus.QUEUED)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Why a discarded message was not applied ("run_stopped", "run_completed", "run_failed").
    reason = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"steering {self.id} [{self.status}]"


class ApiToken(models.Model):
    """A bearer token for programs. Only its SHA-256 digest is stored; the token is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"token {self.prefix}… for {self.user}"


class WorkerHeartbeat(models.Model):
    """One row per live orchestrator worker process, refreshed every few seconds: the health endpoint counts
    the live ones, and operators see which process drives what (Run.executor_id names the same owner)."""

    executor_id = models.CharField(max_length=128, primary_key=True)
    channel_name = models.CharField(max_length=200, blank=True, default="")
    started_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    runs = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.executor_id


class WorkspaceUpload(models.Model):
    """A file a user uploaded into a session's workspace (`services/uploads.py`): who uploaded which name, so a
    listing can say so. The file itself lives in the workspace; this row is only its record (the agent may
    change or delete the file later)."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="uploads")
    name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.OneToOneField(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="upload")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["session", "name"], name="upload_session_name")]

    def __str__(self) -> str:
        return f"upload {self.name} ({self.size} bytes)"
