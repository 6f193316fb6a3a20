"""Settings of the appliance's control plane, all from the environment.

Every variable read here is listed, with its default, in ``.env.example``.
A malformed value stops start-up with a message naming the variable (see
``appliance.env``). Nothing outside this file reads the environment.

DEBUG is off unless ``DEBUG=1`` is set: a debug error page shows the request
back, a submitted password included. With DEBUG off, ``SECRET_KEY`` and
``CLUSTER_SECRET_KEY`` (or their ``*_FILE`` variants) must be set, and not to
the placeholders of ``.env.example``. Development sets ``DEBUG=1`` (the test
suite does, in ``pyproject.toml``; ``make demo`` generates its secrets); the
secrets are then derived when unset, and ``manage.py check`` says so.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from appliance.env import envbool, envheader, envint, envlist, envsecret, envstr, envurl

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime files (the SQLite database, collected static files) live here.
VAR_DIR = Path(envstr("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = envbool("DEBUG", False)
DEMO_MODE = envbool("DEMO_MODE", False)

# How every placeholder value in .env.example begins. A copy of that file left
# unedited would sign sessions and encrypt alias passwords with published keys.
PLACEHOLDER_PREFIX = "change-me"
_DEVELOPMENT_HINT = "(DEBUG is off unless set; for development only, set DEBUG=1)"


def _production_secret(name: str, value: str | None) -> str | None:
    """``value``, refused when DEBUG is off and it is missing or a placeholder."""
    if DEBUG:
        return value
    if value is None:
        raise ImproperlyConfigured(
            f"{name} (or {name}_FILE) must be set when DEBUG is off {_DEVELOPMENT_HINT}."
        )
    if value.startswith(PLACEHOLDER_PREFIX):
        raise ImproperlyConfigured(
            f"{name} is still the placeholder of .env.example; set a random value, e.g. "
            "the output of: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'."
        )
    return value


_secret_key = _production_secret("SECRET_KEY", envsecret("SECRET_KEY"))
if _secret_key is None:
    _secret_key = "django-insecure-development-only-do-not-use-in-production"
SECRET_KEY: str = _secret_key

# The key that encrypts alias passwords at rest (cluster.crypto). Changing it
# makes stored passwords unreadable: move the old one to the fallbacks first.
_cluster_key = _production_secret("CLUSTER_SECRET_KEY", envsecret("CLUSTER_SECRET_KEY"))
CLUSTER_SECRET_KEY_IS_DEVELOPMENT = _cluster_key is None
if _cluster_key is None:
    _cluster_key = "development-only:" + hashlib.sha256(SECRET_KEY.encode()).hexdigest()
elif len(_cluster_key) < 32:
    raise ImproperlyConfigured("CLUSTER_SECRET_KEY must be at least 32 characters long.")
CLUSTER_SECRET_KEY: str = _cluster_key
CLUSTER_SECRET_KEY_FALLBACKS: list[str] = envlist("CLUSTER_SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if not DEBUG else [])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", False)
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 8 * 3600, minimum=60)
# HTTPS (manage.py check --deploy): all off by default, since the demo and a
# first start are plain HTTP on 127.0.0.1; an appliance behind TLS sets them.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
# Behind a TLS-terminating proxy, the header by which it says the request came
# over HTTPS ("X-Forwarded-Proto: https"); only if the proxy always sets it.
SECURE_PROXY_SSL_HEADER = envheader("SECURE_PROXY_SSL_HEADER")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # API tokens stored hashed (knox) and login lockout (axes): see the block at the end.
    "knox",
    "axes",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "cluster",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "appliance.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "appliance.urls"
WSGI_APPLICATION = "appliance.wsgi.application"
ASGI_APPLICATION = "appliance.asgi.application"

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


def _database(url: str | None) -> dict[str, Any]:
    if url is None:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "appliance.sqlite3",
            # Node workers share this file: wait for a writer instead of failing, let
            # readers go on beside the one writer (WAL), and take the write lock at
            # BEGIN so that two writers queue instead of deadlocking on an upgrade.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL;",
            },
        }
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=60))
    except Exception as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if not config.get("ENGINE"):
        raise ImproperlyConfigured(f"DATABASE_URL has an unknown scheme: {url.split(':')[0]!r}.")
    return config


DATABASES = {"default": _database(envsecret("DATABASE_URL"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the app directories too, so no collectstatic is needed
# for the demo; a production image runs collectstatic into STATIC_ROOT.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

REDIS_URL = envurl("REDIS_URL", "redis://127.0.0.1:6379/0", {"redis", "rediss", "redis+socket"})
if not DEBUG and (urlsplit(REDIS_URL).password or "").startswith(PLACEHOLDER_PREFIX):
    raise ImproperlyConfigured(
        "REDIS_URL still has the placeholder password of .env.example; use Redis's requirepass."
    )

# Notifications (cluster/notify.py, sent by `manage.py notifier`). E-mail goes
# through Django's SMTP backend with these; EMAIL_PASSWORD has a _FILE variant.
EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envsecret("EMAIL_PASSWORD") or ""
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10, minimum=1, maximum=300)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "cluster@localhost")
# Seconds a webhook receiver has to answer; a slower one is a failed attempt.
NOTIFY_WEBHOOK_TIMEOUT = envint("NOTIFY_WEBHOOK_TIMEOUT", 5, minimum=1, maximum=60)
# Seconds a node's applied configuration may differ from the desired one before
# the notifier reports configuration drift.
NOTIFY_DRIFT_GRACE_SECONDS = envint("NOTIFY_DRIFT_GRACE_SECONDS", 30, minimum=1)
# Days cluster events and notification deliveries (with their attempt log) are
# kept; the notifier prunes hourly (cluster/retention.py, manage.py prune_events).
# At most a century: the cut-off is a date.
EVENT_RETENTION_DAYS = envint("EVENT_RETENTION_DAYS", 90, minimum=1, maximum=36500)
DELIVERY_RETENTION_DAYS = envint("DELIVERY_RETENTION_DAYS", 30, minimum=1, maximum=36500)

# Celery (appliance/celery.py reads every CELERY_* setting). JSON only: a
# pickle payload from the broker would be code execution on every node.
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_TIMEOUT = envint("CELERY_BROKER_CONNECTION_TIMEOUT", 2, minimum=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A node's worker retries the broker for ever: Celery would otherwise exit after 100
# attempts, and with it the CARP engine that serves the VIPs.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# ... and retries it every 2 s at most (not kombu's 30 s), so that apply tasks flow
# again soon after an outage (cluster/node/lifecycle.py).
CELERY_WORKER_CONSUMER = "cluster.node.lifecycle:NodeConsumer"
# Workers import the receiving side of the apply task at start; the web only sends it.
CELERY_IMPORTS = ("cluster.node.tasks",)
# The Redis transport polls every second by default; 0.2 s makes worker
# shutdown (and so engine failover on a clean stop) quicker.
CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.2}
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)

# Send an apply task to each affected node after every committed change.
CLUSTER_DISPATCH_APPLY = envbool("CLUSTER_DISPATCH_APPLY", True)
# Prometheus's scrape token for /metrics (Authorization: Bearer ...); empty: only
# API tokens of administrators and support are accepted.
METRICS_BEARER_TOKEN = envsecret("METRICS_BEARER_TOKEN") or ""
# The node a worker's CARP engine runs as; empty: the name in its -Q carp.<node>.
CLUSTER_NODE = envstr("CLUSTER_NODE", "")
# Days of transition history kept; the node workers prune older rows hourly.
CLUSTER_TRANSITION_RETENTION_DAYS = envint("CLUSTER_TRANSITION_RETENTION_DAYS", 30, minimum=1)

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous call then gets 401 with "WWW-Authenticate: Token".
        "cluster.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["cluster.api.permissions.IsAdministratorOrReadOnly"],
    # DRF's three, with a JSON parser that answers a too deeply nested body with a 400.
    "DEFAULT_PARSER_CLASSES": [
        "cluster.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "cluster.api.pagination.StandardPagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "cluster.api.filters.NamedSearchFilter",
        "cluster.api.filters.StableOrderingFilter",
    ],
    # drf-spectacular's, with the 400/401/403/404 answers documented.
    "DEFAULT_SCHEMA_CLASS": "cluster.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "cluster.api.exceptions.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
API_PAGE_SIZE = envint("API_PAGE_SIZE", 50, minimum=1, maximum=1000)

SPECTACULAR_SETTINGS = {
    "TITLE": "Appliance cluster API",
    "DESCRIPTION": "Nodes and IP aliases (CARP virtual hosts) of the appliance cluster.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and the docs are for users with a role, like the API itself.
    "SERVE_PERMISSIONS": ["cluster.api.permissions.IsAdministratorOrReadOnly"],
    # Assets from drf-spectacular-sidecar, served by this app: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One name per choice set that several fields share (transitions' from/to).
    "ENUM_NAME_OVERRIDES": {
        "CarpStateEnum": "cluster.choices.CarpState",
        "PriorityEnum": "cluster.choices.Priority.values",
    },
}

LOG_LEVEL = envstr("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL; got {LOG_LEVEL!r}."
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"cluster": {"level": LOG_LEVEL}, "appliance": {"level": LOG_LEVEL}},
}

# --- Authentication: API tokens, throttling, login lockout -------------------
# API tokens are stored as SHA-512 digests (django-rest-knox), so neither the
# admin nor a copy of the database shows a usable key; the key is shown once, by
# POST /api/v1/auth/token/ or manage.py create_api_token. 0 hours: no expiry.
_token_ttl_hours = envint("API_TOKEN_TTL_HOURS", 0, minimum=0)
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_TTL": datetime.timedelta(hours=_token_ttl_hours) if _token_ttl_hours else None,
}
# POSTs to /api/v1/auth/token/ per minute and client address; more get 429 with
# Retry-After. Read per request (cluster.api.auth.TokenThrottle), not at import.
API_TOKEN_THROTTLE_PER_MINUTE = envint("API_TOKEN_THROTTLE_PER_MINUTE", 10, minimum=1)
# Reverse proxies in front of the web (0: the client is REMOTE_ADDR). With N, the
# client is the N-th address from the right of X-Forwarded-For; anything further
# left was written by the client and is not trusted. Throttling and lockout both
# use it (cluster.lockout.client_address).
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0, minimum=0)
REST_FRAMEWORK["NUM_PROXIES"] = TRUSTED_PROXY_COUNT

# Lockout (django-axes): LOGIN_FAILURE_LIMIT failed logins for one user name from
# one address lock that pair out for LOGIN_LOCKOUT_MINUTES, on the console's login
# page, the admin's and the token endpoint alike. A failure during the lockout
# starts the wait again; a successful login clears the count.
AXES_ENABLED = envbool("LOGIN_LOCKOUT_ENABLED", True)
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "cluster.lockout.client_address"
AXES_LOCKOUT_CALLABLE = "cluster.lockout.lockout_response"
AXES_VERBOSE = False
AUTHENTICATION_BACKENDS = [
    "cluster.lockout.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Last, so that it sees the answer of the login view it may replace with the lockout's.
MIDDLEWARE = [*MIDDLEWARE, "axes.middleware.AxesMiddleware"]
