"""Django settings for Runboard. Every knob is an environment variable (README table).

Defaults make a fresh checkout run: SQLite in WAL mode under ``var/``, the
in-memory channel layer, the simulated gateway. ``DEBUG`` only when asked for.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import structlog
from django.utils.csp import CSP

from gateway_bridge.events import PHASES
from runboard.env import (
    SettingError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_optional_key,
    env_phase_seconds,
    env_port,
    env_secret_key,
    env_str,
    env_time_zone,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("RUNBOARD_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("RUNBOARD_DEBUG", False)
# Required unless DEBUG: `make demo` and `make test` make one of their own under var/.
SECRET_KEY = env_secret_key(
    "RUNBOARD_SECRET_KEY",
    "RUNBOARD_SECRET_KEY_FILE",
    debug=DEBUG,
    development_key="django-insecure-runboard-development-key-for-debug-only",
)
ALLOWED_HOSTS = env_list(
    "RUNBOARD_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env_list("RUNBOARD_CSRF_TRUSTED_ORIGINS", [])

# Served over HTTPS by a TLS-terminating proxy (docs/deploy.md): HSTS, the redirect,
# secure cookies, and the proxy's X-Forwarded-Proto trusted to say the request was HTTPS.
HTTPS = env_bool("RUNBOARD_HTTPS", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_SSL_REDIRECT = HTTPS
# Probes and scrapers ask the workers directly, over loopback HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("RUNBOARD_HSTS_SECONDS", 31_536_000, minimum=0) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (Django's own middleware): every script and style is a file
# under static/, so no inline code runs even if some markup were injected.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],  # 'self' covers ws:/wss: to the same host since CSP 3
    "font-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
}

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "django_structlog",
    "axes",
    "adminpanel",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "adminpanel.security.PermissionsPolicyMiddleware",
    # Serves static/ (htmx, CSS) from daphne itself: no separate web server in the demo.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # A database that is away: 503 naming it, not a bare 500 (adminpanel/degraded.py).
    "adminpanel.degraded.StoreUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
    # Last: refuses a locked-out client's login (adminpanel/logins.py).
    "axes.middleware.AxesMiddleware",
]

# Login throttling (django-axes): after RUNBOARD_LOGIN_FAILURE_LIMIT failed logins for one
# user name, or from one client address, logins are refused for RUNBOARD_LOGIN_LOCKOUT_S,
# even with the right password. Attempts and lockouts are listed in the admin.
AUTHENTICATION_BACKENDS = [
    "adminpanel.logins.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("RUNBOARD_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("RUNBOARD_LOGIN_LOCKOUT_S", 900, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "locked_out.html"
AXES_VERBOSE = False  # adminpanel/logins.py logs each failure and lockout itself

ROOT_URLCONF = "runboard.urls"
ASGI_APPLICATION = "runboard.asgi.application"

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

DB_POOL_MAX = env_int("RUNBOARD_DB_POOL_MAX", 20, minimum=1)
DB_POOL_TIMEOUT_S = env_float("RUNBOARD_DB_POOL_TIMEOUT_S", 10.0, minimum=0.1)
# psycopg's pool retries a failed connect after 1, 2, 4, 8 … s until this gives out,
# and meanwhile nobody's request starts a new attempt: after a 30 s outage its next
# try could come half a minute after the server was back (docs/notes/faults.md).
# Giving up after 5 s lets the next request start afresh, at once.
DB_RECONNECT_TIMEOUT_S = 5.0
# The ingest writer's statements (server-side binding) are prepared on the server after
# five uses, so PostgreSQL parses and plans each once per connection: about a quarter
# less of its CPU under the fanout bench's 500 events/s (0.25 → 0.18 of a core,
# docs/notes/fanout.md). Django's own
# queries bind on the client and are never prepared. Off for a pooler that cannot
# carry prepared statements (PgBouncer in transaction mode before 1.21).
DB_PREPARED_STATEMENTS = env_bool("RUNBOARD_DB_PREPARED_STATEMENTS", True)
DATABASE_URL = env_url(
    "RUNBOARD_DATABASE_URL", "", schemes=("sqlite", "postgres", "postgresql"), hostless=("sqlite",)
)


# WAL lets the web server read while the bridge writes; any SQLite file gets these.
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}


def _database(url: str) -> dict[str, Any]:
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "runboard.sqlite3",
            "OPTIONS": dict(SQLITE_OPTIONS),
            # Tests use a file too, not SQLite's shared-cache memory database: there
            # a second thread (the broadcaster's renders) fails at once with "table
            # is locked" instead of waiting. One file per process, so parallel runs
            # do not collide.
            "TEST": {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")},
        }
    # dj-database-url keeps the URL's query options (sslmode, connect_timeout …).
    config: dict[str, Any] = dict(dj_database_url.parse(url))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["OPTIONS"] = {**SQLITE_OPTIONS, **config.get("OPTIONS", {})}
        return config
    config["ENGINE"] = "django.db.backends.postgresql"
    # Under ASGI each request may run on another thread: Django's own advice is
    # no persistent connections (CONN_MAX_AGE 0) and psycopg's pool instead.
    config["CONN_MAX_AGE"] = 0
    config["OPTIONS"] = {
        "pool": {
            "min_size": 1,
            "max_size": DB_POOL_MAX,
            "timeout": DB_POOL_TIMEOUT_S,
            "reconnect_timeout": DB_RECONNECT_TIMEOUT_S,
        },
        "connect_timeout": 10,
        "prepare_threshold": 5 if DB_PREPARED_STATEMENTS else None,
        **config.get("OPTIONS", {}),
    }
    return config


DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("RUNBOARD_REDIS_URL", "", schemes=("redis", "rediss"))
# Channel layers forget a group member after a day by default: a console left open longer
# would silently stop receiving pushes. Members leave when their socket closes.
GROUP_EXPIRY_S = 365 * 24 * 3600
# Set by `manage.py demo` for its bridge process: the web process's channel hub socket.
CHANNEL_HUB = env_str("RUNBOARD_CHANNEL_HUB", "")
if CHANNEL_HUB and not os.path.isabs(CHANNEL_HUB):
    raise SettingError(
        f"RUNBOARD_CHANNEL_HUB={CHANNEL_HUB!r}: expected the absolute path of the hub's socket"
    )
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "adminpanel.live.redis_layer.RedisChannelLayer",
            # A viewer's channel holds this many pushes before channels-redis drops the
            # next (its default, 100, was overrun by a slow viewer under 500 events/s).
            "CONFIG": {"hosts": [REDIS_URL], "group_expiry": GROUP_EXPIRY_S, "capacity": 1000},
        }
    }
elif CHANNEL_HUB:
    CHANNEL_LAYERS = {
        "default": {
            # The bridge process of `manage.py demo`: the web process's layer, over a socket.
            "BACKEND": "adminpanel.live.hub.HubChannelLayer",
            "CONFIG": {"path": CHANNEL_HUB, "group_expiry": GROUP_EXPIRY_S},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            # Channels' in-memory layer, with a cheaper group send (channel_layer.py).
            "BACKEND": "adminpanel.live.memory_layer.InProcessChannelLayer",
            "CONFIG": {"group_expiry": GROUP_EXPIRY_S},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_time_zone("RUNBOARD_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Serve straight from the finders, so a fresh checkout needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Gateways and the bridge -------------------------------------------------

# The default gateway. Empty: the demo starts the simulated gateways instead.
RUNBOARD_GATEWAY_URL = env_url("RUNBOARD_GATEWAY_URL", "", schemes=("ws", "wss"))
RUNBOARD_GATEWAY_TOKEN = env_str("RUNBOARD_GATEWAY_TOKEN", "")
RUNBOARD_GATEWAY_NAME = env_str("RUNBOARD_GATEWAY_NAME", "default")
RUNBOARD_CALL_TIMEOUT_S = env_float("RUNBOARD_CALL_TIMEOUT_S", 5.0, minimum=0.1)
RUNBOARD_CONNECT_TIMEOUT_S = env_float("RUNBOARD_CONNECT_TIMEOUT_S", 10.0, minimum=0.1)
RUNBOARD_BACKOFF_MAX_S = env_float("RUNBOARD_BACKOFF_MAX_S", 30.0, minimum=0.1)
# Events held back waiting for a missing sequence number before the store
# gives up on the gap and asks the bridge for a snapshot.
RUNBOARD_REORDER_WINDOW = env_int("RUNBOARD_REORDER_WINDOW", 256, minimum=1)
RUNBOARD_REORDER_WAIT_S = env_float("RUNBOARD_REORDER_WAIT_S", 2.0, minimum=0.0)
# Several bridges share the gateways through leases of this length (adminpanel/bridges/leases.py):
# a dead bridge's gateways are taken over within about one lease and a third, and /readyz
# and /metrics call a bridge whose heartbeat is older than one lease gone.
RUNBOARD_BRIDGE_LEASE_S = env_float("RUNBOARD_BRIDGE_LEASE_S", 6.0, minimum=1.0)
RUNBOARD_DETECT_TICK_S = env_float("RUNBOARD_DETECT_TICK_S", 0.5, minimum=0.05)
# How often the recovery policies look for due countdowns (adminpanel/recovery.py).
RUNBOARD_RECOVERY_TICK_S = env_float("RUNBOARD_RECOVERY_TICK_S", 1.0, minimum=0.05)
# Timeline events, skips and cleared flags older than this go (adminpanel/retention.py);
# audit entries never do. `manage.py prune` deletes them this many rows per transaction.
RUNBOARD_RETENTION_DAYS = env_int("RUNBOARD_RETENTION_DAYS", 30, minimum=1)
RUNBOARD_PRUNE_BATCH = env_int("RUNBOARD_PRUNE_BATCH", 5000, minimum=1)
# Users' message texts kept for requeue are blanked once requeued, and after this many days.
RUNBOARD_MESSAGE_TEXT_DAYS = env_int("RUNBOARD_MESSAGE_TEXT_DAYS", 7, minimum=1)

# --- Observability (adminpanel/observability/) ---------------------------------
# A Bearer token Prometheus may send to /metrics instead of a viewer's API token.
RUNBOARD_METRICS_TOKEN = env_str("RUNBOARD_METRICS_TOKEN", "")
if RUNBOARD_METRICS_TOKEN and len(RUNBOARD_METRICS_TOKEN) < 16:
    raise SettingError("RUNBOARD_METRICS_TOKEN: expected at least 16 characters")

# --- Flag thresholds (adminpanel.detect) -------------------------------------

RUNBOARD_STUCK_AFTER_S = env_float("RUNBOARD_STUCK_AFTER_S", 120.0, minimum=0.1)
RUNBOARD_STUCK_AFTER_BY_PHASE = env_phase_seconds("RUNBOARD_STUCK_AFTER_BY_PHASE", PHASES)
RUNBOARD_TERMINAL_HELD_AFTER_S = env_float("RUNBOARD_TERMINAL_HELD_AFTER_S", 5.0, minimum=0.0)
RUNBOARD_WAITER_UNBOUNDED_AFTER_S = env_float(
    "RUNBOARD_WAITER_UNBOUNDED_AFTER_S", 30.0, minimum=0.0
)
RUNBOARD_SKIP_BURST_COUNT = env_int("RUNBOARD_SKIP_BURST_COUNT", 3, minimum=1)
RUNBOARD_SKIP_BURST_WINDOW_S = env_float("RUNBOARD_SKIP_BURST_WINDOW_S", 60.0, minimum=1.0)
RUNBOARD_ALTERNATING_MIN_FAILURES = env_int("RUNBOARD_ALTERNATING_MIN_FAILURES", 2, minimum=1)
RUNBOARD_ALTERNATING_WINDOW_S = env_float("RUNBOARD_ALTERNATING_WINDOW_S", 300.0, minimum=1.0)
RUNBOARD_STORE_MISMATCH_AFTER_S = env_float("RUNBOARD_STORE_MISMATCH_AFTER_S", 10.0, minimum=0.0)

# --- Notifications (adminpanel.notify) ---------------------------------------

# A generic JSON webhook for every gateway and severity, on top of the admin's channels.
RUNBOARD_NOTIFY_WEBHOOK_URL = env_url("RUNBOARD_NOTIFY_WEBHOOK_URL", "", schemes=("http", "https"))
# While a flag stays active, a reminder every this many seconds.
RUNBOARD_NOTIFY_REMIND_AFTER_S = env_float("RUNBOARD_NOTIFY_REMIND_AFTER_S", 3600.0, minimum=1.0)
# Every webhook POST and SMTP conversation gives up after this long (then retries later).
RUNBOARD_NOTIFY_TIMEOUT_S = env_float("RUNBOARD_NOTIFY_TIMEOUT_S", 5.0, minimum=0.1)
RUNBOARD_NOTIFY_TICK_S = env_float("RUNBOARD_NOTIFY_TICK_S", 2.0, minimum=0.05)
# The base of links in notices: where operators reach this Runboard.
RUNBOARD_PUBLIC_URL = env_url(
    "RUNBOARD_PUBLIC_URL", "http://127.0.0.1:8000", schemes=("http", "https")
)
MAILERS = {
    "default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": env_str("RUNBOARD_EMAIL_HOST", "localhost"),
            "port": env_int("RUNBOARD_EMAIL_PORT", 25, minimum=1),
            "username": env_str("RUNBOARD_EMAIL_USER", ""),
            "password": env_str("RUNBOARD_EMAIL_PASSWORD", ""),
            "use_tls": env_bool("RUNBOARD_EMAIL_USE_TLS", False),
            "timeout": RUNBOARD_NOTIFY_TIMEOUT_S,
        },
    }
}
DEFAULT_FROM_EMAIL = env_str("RUNBOARD_EMAIL_FROM", "runboard@localhost")

# --- Demo ---------------------------------------------------------------------

RUNBOARD_DEMO_SEED = env_int("RUNBOARD_DEMO_SEED", 7)
RUNBOARD_DEMO_PASSWORD = env_str("RUNBOARD_DEMO_PASSWORD", "runboard")
# When set, the demo's operator user gets this JSON API token (the same on every start).
RUNBOARD_DEMO_API_TOKEN = env_str("RUNBOARD_DEMO_API_TOKEN", "")
RUNBOARD_DEMO_PORT = env_port("RUNBOARD_DEMO_PORT", 8000)
RUNBOARD_SIM_BASE_PORT = env_int("RUNBOARD_SIM_BASE_PORT", 18789, minimum=1, maximum=65533)

# --- Audit chain (adminpanel/audit/chain.py, docs/security.md) ----------------

# HMAC key of the audit chain, kept outside the database. Unset: derived from SECRET_KEY.
RUNBOARD_AUDIT_KEY = env_optional_key("RUNBOARD_AUDIT_KEY", "RUNBOARD_AUDIT_KEY_FILE")
# The chain's head (last seq and hash) is logged, and appended to this file when set,
# every RUNBOARD_AUDIT_HEAD_EVERY entries or when RUNBOARD_AUDIT_HEAD_INTERVAL_S passed;
# bridge supervisors also read it every RUNBOARD_AUDIT_HEAD_INTERVAL_S and note it if it changed.
RUNBOARD_AUDIT_HEAD_FILE = env_str("RUNBOARD_AUDIT_HEAD_FILE", "")
RUNBOARD_AUDIT_HEAD_EVERY = env_int("RUNBOARD_AUDIT_HEAD_EVERY", 10, minimum=1)
RUNBOARD_AUDIT_HEAD_INTERVAL_S = env_float("RUNBOARD_AUDIT_HEAD_INTERVAL_S", 60.0, minimum=0.0)

# A live socket re-checks that its login session still exists this often (closed if not).
RUNBOARD_LIVE_SESSION_CHECK_S = env_float("RUNBOARD_LIVE_SESSION_CHECK_S", 10.0, minimum=0.05)

# --- Logging (structlog, configured once) -------------------------------------

RUNBOARD_LOG_LEVEL = env_choice("RUNBOARD_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
RUNBOARD_LOG_FORMAT = env_choice("RUNBOARD_LOG_FORMAT", "console", ("console", "json"))

_renderer: structlog.types.Processor = (
    structlog.processors.JSONRenderer()
    if RUNBOARD_LOG_FORMAT == "json"
    else structlog.dev.ConsoleRenderer(colors=False)
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {
            "()": structlog.stdlib.ProcessorFormatter,
            "processor": _renderer,
            "foreign_pre_chain": [
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso"),
            ],
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "structured"},
    },
    "root": {"handlers": ["console"], "level": RUNBOARD_LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "WARNING"},
        "django_structlog": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "websockets": {"level": "WARNING"},
    },
}

structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.filter_by_level,
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    cache_logger_on_first_use=True,
)

VAR_DIR.mkdir(parents=True, exist_ok=True)
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request without it
