"""Settings for the agent harness.

Environment variables are read with the three small typed readers below (their errors name the variable,
which django-environ's casts do not); DATABASE_URL is parsed by dj-database-url.

Everything comes from the environment with an embedded default, so `make run` works on a fresh machine
(SQLite + the in-memory channel layer + the scripted model) and the same code scales out by configuration
alone (PostgreSQL via DATABASE_URL, Redis via REDIS_URL). Every variable is documented in README.md.
"""

from __future__ import annotations

import os
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HARNESS_VAR_DIR", BASE_DIR / "var"))


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc


def _env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    """DATABASE_URL (sqlite:///relative/path, sqlite:////absolute/path or postgres://user:pass@host:port/name)
    as Django's dict, parsed by dj-database-url; the engines' options are ours."""
    scheme = url.split("://", 1)[0] if "://" in url else url
    if scheme not in _DATABASE_SCHEMES:
        raise ImproperlyConfigured(f"DATABASE_URL scheme {scheme!r} is not supported (sqlite or postgres)")
    try:
        parsed = dj_database_url.parse(url)
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
    if _DATABASE_SCHEMES[scheme] == "sqlite":
        # sqlite:///relative.db is relative to the project, sqlite:////abs/path.db is absolute.
        return _sqlite_database(BASE_DIR / parsed["NAME"])  # an absolute NAME replaces BASE_DIR
    return {
        **parsed,
        "PORT": str(parsed["PORT"] or ""),
        "OPTIONS": parsed.get("OPTIONS", {}),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


_DATABASE_SCHEMES = {"sqlite": "sqlite", "postgres": "postgres", "postgresql": "postgres", "pgsql": "postgres"}


def _sqlite_database(path: Path) -> dict:
    return {
        "ENGINE": "harness.sqlite",  # Django's, with writers queued on a lock (harness/sqlite/base.py)
        "NAME": str(path),
        # WAL lets readers run beside the one writer; IMMEDIATE transactions take the write lock at BEGIN,
        # so two writers queue on busy_timeout instead of failing with "database is locked" on upgrade.
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
        },
        # One process owns the file; reconnecting (and re-running the PRAGMAs) per ORM call is wasted work.
        "CONN_MAX_AGE": None,
        # Tests get their own file (not :memory:): the engine's DB thread and the test thread need real
        # connections to one WAL database.
        "TEST": {"NAME": str(path.with_name(path.stem + "-test.sqlite3"))},
    }


# The default is public: the "django-insecure-" prefix makes `check --deploy` refuse it (security.W009).
SECRET_KEY = os.environ.get("SECRET_KEY", "django-insecure-harness-development-key-never-use-in-production")
DEBUG = _env_bool("DEBUG", False)

# Behind a TLS-terminating proxy (docs/deploy.md): HARNESS_HTTPS=true turns on every HTTPS-only protection.
HARNESS_HTTPS = _env_bool("HARNESS_HTTPS", False)
if HARNESS_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = _env_bool("HARNESS_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]  # scraped by monitors, often straight from the host
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(_env_float("HARNESS_HSTS_SECONDS", 31536000))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = _env_bool("HARNESS_HSTS_PRELOAD", True)
ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Before "channels": its `runworker` command is replaced by orchestrator's (earlier apps win).
    "orchestrator",
    "channels",
    "harness.portal",
    "django_htmx",
    "axes",
]

# Failed logins and bearer tokens are throttled by django-axes (harness/throttle.py).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from the app process itself: `make run` needs no web server in front.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # request.htmx: htmx requests are answered in a way htmx acts on (harness/portal/auth.py).
    "django_htmx.middleware.HtmxMiddleware",
    # A database outage is a 503 its client understands, never a 500 (harness/middleware.py).
    "harness.middleware.DatabaseOutageMiddleware",
    "axes.middleware.AxesMiddleware",
    # Last: makes the chain above run in one thread instead of hopping per hook (see its docstring).
    "harness.middleware.OneThreadMiddlewareChain",
]

ROOT_URLCONF = "harness.urls"
ASGI_APPLICATION = "harness.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(os.environ["DATABASE_URL"])
    if os.environ.get("DATABASE_URL")
    else _sqlite_database(VAR_DIR / "harness.sqlite3")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # When Redis restarts, pooled connections are dead: reconnect and retry (≈ 3 s in all)
                # instead of failing the command (and the socket or worker that issued it).
                "hosts": [{
                    "address": REDIS_URL,
                    "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), 8),
                    "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionError],
                    "socket_connect_timeout": 2,
                    "health_check_interval": 15,
                }],
                # Messages are notifications (the database is the truth), so a short expiry is right: a
                # stale wake-up or delta is worthless after a minute.
                "expiry": 60,
                # Per-channel queue bound. Streaming deltas are coalesced (≤ 20/s per message), so a socket
                # watching a few runs stays far below this; the orchestrator channel carries every start,
                # stop and wake of the deployment and gets more room.
                "capacity": 500,
                "channel_capacity": {"orchestrator": 5000},
                # Group membership outlives any one socket: consumers re-join every hour (see
                # harness/groups.py), so a day-long socket is never silently dropped from its session.
                "group_expiry": 86400,
            },
        }
    }
else:
    # One process: the orchestrator channel carries every start/stop/wake; the default capacity (100) drops
    # wake-ups when hundreds of runs start at once (recovery would still find them, a second later).
    # (Its expiry sweep runs once a second instead of on every message: harness/layers.py.)
    CHANNEL_LAYERS = {"default": {"BACKEND": "harness.layers.AmortisedInMemoryChannelLayer", "CONFIG": {"capacity": 5000}}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
# Serve straight from static/ (no collectstatic step for the embedded default); a deployment that runs
# collectstatic sets HARNESS_STATIC_FROM_FINDERS=false and gets WhiteNoise's cached, compressed files.
WHITENOISE_USE_FINDERS = _env_bool("HARNESS_STATIC_FROM_FINDERS", True)
WHITENOISE_AUTOREFRESH = DEBUG
# WhiteNoise also serves collected files from STATIC_ROOT, and warns at start-up while it does not exist yet
# (before any collectstatic): expected when serving from the finders. Settings create no directories, so
# they load on a read-only filesystem.
warnings.filterwarnings("ignore", message=r"No directory at: ", category=UserWarning)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
    "loggers": {"orchestrator": {"level": os.environ.get("HARNESS_LOG_LEVEL", "INFO")}},
}

# --- The harness -----------------------------------------------------------------------------------------

# Which model drives runs by default, and which others a session may choose (comma-separated model ids;
# the default is always offered). Ids: scripted | openai:<model>[@<base_url>] | anthropic:<model>[@<base_url>]
# (orchestrator/providers/catalog.py). `manage.py check`, `serve` and `runworker` refuse a model they cannot use.
HARNESS_MODEL = os.environ.get("HARNESS_MODEL", "scripted")
HARNESS_MODELS = _env_list("HARNESS_MODELS", [])
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")  # for every openai: model without its own @base_url
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = os.environ.get("ANTHROPIC_BASE_URL", "")
# A model call fails when it cannot connect within this long, or when a connected stream sends nothing for
# the idle timeout; there is deliberately no total timeout (a long answer may stream for minutes).
HARNESS_MODEL_CONNECT_TIMEOUT_SECONDS = _env_float("HARNESS_MODEL_CONNECT_TIMEOUT_SECONDS", 10)
HARNESS_MODEL_IDLE_TIMEOUT_SECONDS = _env_float("HARNESS_MODEL_IDLE_TIMEOUT_SECONDS", 60)
# Rate limits, server errors and failed connects are retried this many times with exponential backoff
# (starting at the base delay, or the server's retry-after) — only before the first token arrives.
HARNESS_MODEL_RETRIES = int(_env_float("HARNESS_MODEL_RETRIES", 2))
HARNESS_MODEL_RETRY_BASE_SECONDS = _env_float("HARNESS_MODEL_RETRY_BASE_SECONDS", 1)
# A longer retry-after than this is not waited for: the run fails with the server's message instead.
HARNESS_MODEL_RETRY_MAX_WAIT_SECONDS = _env_float("HARNESS_MODEL_RETRY_MAX_WAIT_SECONDS", 30)
# Anthropic requires an answer length limit; OpenAI-compatible servers use their own default.
HARNESS_MODEL_MAX_TOKENS = int(_env_float("HARNESS_MODEL_MAX_TOKENS", 4096))
# A run ends with a visible "stopped: max turns (N) reached" message after this many assistant turns.
HARNESS_MAX_TURNS = int(_env_float("HARNESS_MAX_TURNS", 20))
# A pending approval expires after this long; the run then continues with the call denied.
HARNESS_APPROVAL_TTL_SECONDS = _env_float("HARNESS_APPROVAL_TTL_SECONDS", 600)
# An executor's lease on a run; renewed every third of it. A dead worker's runs are resumed after it lapses.
HARNESS_LEASE_TTL_SECONDS = _env_float("HARNESS_LEASE_TTL_SECONDS", 8)
# A run taken over from a lapsed lease more often than this is finalized as failed instead of resumed.
HARNESS_MAX_RESUMES = int(_env_float("HARNESS_MAX_RESUMES", 5))
# While streaming or running a tool the executor re-reads the stop flag this often, so a lost wake-up
# message still stops the run within a second.
HARNESS_STOP_POLL_SECONDS = _env_float("HARNESS_STOP_POLL_SECONDS", 0.5)
# How often each worker beats its heartbeat and looks for runs nobody drives (lapsed leases, lost
# wake-ups, resolved approvals). A dead worker's runs resume within lease TTL + this.
HARNESS_RECOVERY_INTERVAL_SECONDS = _env_float("HARNESS_RECOVERY_INTERVAL_SECONDS", 1)
# Streaming text reaches the database at least this often (and on every exit).
HARNESS_CHECKPOINT_SECONDS = _env_float("HARNESS_CHECKPOINT_SECONDS", 0.25)
# Streaming deltas are coalesced into one event per message at most this often …
HARNESS_DELTA_COALESCE_SECONDS = _env_float("HARNESS_DELTA_COALESCE_SECONDS", 0.05)
# … and less often when a process streams so many answers at once that it would send more delta events per
# second than this (the interval becomes streams / this): beyond it the event loop falls behind and every
# client's latency grows without bound, while bigger, rarer deltas keep it flowing.
HARNESS_MAX_DELTAS_PER_SECOND = _env_float("HARNESS_MAX_DELTAS_PER_SECOND", 2000)
# Each session gets a workspace directory below this root (shell, read_file, write_file run there).
HARNESS_WORKSPACE_ROOT = Path(os.environ.get("HARNESS_WORKSPACE_ROOT", VAR_DIR / "workspaces"))
# A file uploaded into a session's workspace (POST /api/sessions/<id>/files) may be at most this big (413 past it).
HARNESS_UPLOAD_LIMIT_BYTES = int(_env_float("HARNESS_UPLOAD_LIMIT_BYTES", 25 * 1024**2))
# The shell tool is killed after this long.
HARNESS_SHELL_TIMEOUT_SECONDS = _env_float("HARNESS_SHELL_TIMEOUT_SECONDS", 60)
# Extra tools: comma-separated dotted paths to `orchestrator.tools.registry.Tool` instances.
HARNESS_EXTRA_TOOLS = _env_list("HARNESS_EXTRA_TOOLS", [])
# MCP servers (orchestrator/mcp/): a JSON file in the common `mcpServers` shape (docs/deploy.md); none when empty.
HARNESS_MCP_CONFIG = os.environ.get("HARNESS_MCP_CONFIG", "")
# A session's stdio MCP servers are stopped once it has had no live run for this long.
HARNESS_MCP_IDLE_SECONDS = _env_float("HARNESS_MCP_IDLE_SECONDS", 300)
# Per user: live runs at once, and run starts a minute (429 `too_many_runs` past either).
HARNESS_MAX_LIVE_RUNS_PER_USER = int(_env_float("HARNESS_MAX_LIVE_RUNS_PER_USER", 5))
HARNESS_MAX_RUN_STARTS_PER_MINUTE = int(_env_float("HARNESS_MAX_RUN_STARTS_PER_MINUTE", 30))
# Limit on a user message / steering message, in bytes of UTF-8.
HARNESS_MAX_TEXT_BYTES = 32 * 1024

# The sandbox every command an agent runs lives in (orchestrator/sandbox/, docs/ARCHITECTURE.md).
HARNESS_BWRAP = os.environ.get("HARNESS_BWRAP", "bwrap")
# Give sandboxed commands the network (off by default: a command reaches nothing, this server included).
HARNESS_SANDBOX_NETWORK = _env_bool("HARNESS_SANDBOX_NETWORK", False)
# Where bubblewrap cannot run, commands are refused unless this is set: they then run unconfined.
HARNESS_UNSAFE_TOOLS = _env_bool("HARNESS_UNSAFE_TOOLS", False)
# Per-process limits inside the sandbox: CPU seconds, address space, processes (all of the sandbox's
# together), size of any one file written (and of its private /tmp).
HARNESS_SANDBOX_CPU_SECONDS = int(_env_float("HARNESS_SANDBOX_CPU_SECONDS", 60))
HARNESS_SANDBOX_MEMORY_BYTES = int(_env_float("HARNESS_SANDBOX_MEMORY_BYTES", 4 * 1024**3))
HARNESS_SANDBOX_PROCESSES = int(_env_float("HARNESS_SANDBOX_PROCESSES", 256))
HARNESS_SANDBOX_FILE_SIZE_BYTES = int(_env_float("HARNESS_SANDBOX_FILE_SIZE_BYTES", 256 * 1024**2))
# A server running as root runs sandboxed commands as this user (root is exempt from the process limit).
HARNESS_SANDBOX_UID = int(_env_float("HARNESS_SANDBOX_UID", 65534))
# Output a tool keeps (shell output, a file read); the rest is counted and reported as truncated.
HARNESS_TOOL_OUTPUT_LIMIT_BYTES = int(_env_float("HARNESS_TOOL_OUTPUT_LIMIT_BYTES", 1024**2))

# Prometheus metrics (docs/operations.md): web processes serve /metrics (to this bearer token when set, else
# to loopback clients only); a worker serves them on HARNESS_METRICS_PORT (at HARNESS_METRICS_ADDR) when set.
HARNESS_METRICS_TOKEN = os.environ.get("HARNESS_METRICS_TOKEN", "")
HARNESS_METRICS_PORT = int(_env_float("HARNESS_METRICS_PORT", 0))
HARNESS_METRICS_ADDR = os.environ.get("HARNESS_METRICS_ADDR", "127.0.0.1")

# django-axes: per client address, and per account at an address (other people's failures never lock a user
# out of their own address); a success resets the count.
AXES_FAILURE_LIMIT = int(_env_float("HARNESS_LOGIN_FAILURE_LIMIT", 10))
AXES_COOLOFF_TIME = timedelta(seconds=_env_float("HARNESS_LOGIN_COOLOFF_SECONDS", 300))
AXES_LOCKOUT_PARAMETERS = ["ip_address", ["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "harness.throttle.lockout_response"
AXES_VERBOSE = False
