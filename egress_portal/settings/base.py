"""Settings shared by every environment, grouped by topic. Defaults are the embedded ones.

Each topic is one block with a comment line; a name is assigned once per file
(tests/test_settings.py holds this), so a later block never silently
overrides an earlier one. Environment-specific files (local, production,
test) override what differs for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dj_database_url
import django_stubs_ext

from egress_portal.settings.env import env_bool, env_int, env_list, env_str
from foundation.encryption import split_keys
from foundation.logging import configure_structlog, logging_config

# Lets the admin and generic views be subscripted for mypy at run time.
django_stubs_ext.monkeypatch()

# --- Paths and hosts: where the portal keeps its files and how it is reached ---------------
BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("EGRESS_VAR_DIR", str(BASE_DIR / "var")))
DEBUG = False
ALLOWED_HOSTS: list[str] = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS: list[str] = env_list("CSRF_TRUSTED_ORIGINS")
# Links in e-mails and webhooks; by default where `make run` listens.
EGRESS_BASE_URL = env_str("EGRESS_BASE_URL") or (
    f"http://{env_str('EGRESS_HOST', '127.0.0.1')}:{env_str('EGRESS_PORT', '8000')}"
)

# --- Applications, middleware, URLs and templates -------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.mfa",
    "audit",
    "exceptions",
    "approvals",
    "foundation.outbox",
    "django_celery_beat",
    "traffic",
    # API docs from the installed package, never a CDN.
    "drf_spectacular_sidecar",
    "csp",
    "django_structlog",
    "outcomes",
    "webhooks",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # OPA's bundle polls: answered here, before the page middleware (exceptions/bundle_views.py).
    "exceptions.bundle_views.OpaBundleMiddleware",
    # Content-Security-Policy on every response, in every environment (see Security below).
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # A NUL in a query string is a 400 before it reaches a database filter.
    "egress_portal.middleware.RefuseNulInQueryMiddleware",
    "egress_portal.middleware.RequestIdMiddleware",
    # Inside RequestIdMiddleware, so the request id and the API token are known when it logs.
    "django_structlog.middlewares.RequestMiddleware",
    # A page action that meets a state change answers 409 with the reason, never a 500.
    "egress_portal.middleware.StateConflictMiddleware",
    # Approvers and security officers enrol an authenticator before anything else.
    "approvals.mfa.RequireMfaEnrolmentMiddleware",
]
ROOT_URLCONF = "egress_portal.urls"
WSGI_APPLICATION = "egress_portal.wsgi.application"
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
                "egress_portal.context_processors.roles",
                "approvals.breakglass.banner",
            ],
        },
    },
]

# --- Database: SQLite under var/ by default, PostgreSQL from DATABASE_URL -----------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")


def database_from_url(url: str) -> dict[str, Any]:
    config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0)))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # IMMEDIATE transactions make SQLite writers queue instead of failing
        # with "database is locked" when the web server and the worker overlap.
        config["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    return config


DATABASES = {"default": database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Sign-in: accounts, passwords, single sign-on, MFA and login limits ---------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_ADAPTER = "egress_portal.auth.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "egress_portal.auth.SocialAccountAdapter"
# Open sign-up is off: admins create users. Flip only for a trial instance.
ACCOUNT_ALLOW_SIGNUPS = env_bool("ACCOUNT_ALLOW_SIGNUPS", False)
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env_str("MFA_TOTP_ISSUER", "Egress Portal")
# Seals TOTP seeds and recovery-code seeds with EGRESS_SECRETS_KEY (Secrets at rest, below).
MFA_ADAPTER = "egress_portal.auth.MFAAdapter"
# Approvers and security officers must enrol an authenticator (every channel, API included).
EGRESS_MFA_REQUIRED_FOR_APPROVERS = env_bool("EGRESS_MFA_REQUIRED_FOR_APPROVERS", True)
# MFA at the decision: a code entered within this many seconds (allauth's reauthentication)
# is needed for break-glass and for approving under a rule that says `mfa: true`.
EGRESS_STEP_UP_SECONDS = env_int("EGRESS_STEP_UP_SECONDS", 300)
# OpenID Connect single sign-on, configured entirely from the environment.
OIDC_PROVIDER_ID = env_str("OIDC_PROVIDER_ID", "sso")
OIDC_SERVER_URL = env_str("OIDC_SERVER_URL")
OIDC_CLIENT_ID = env_str("OIDC_CLIENT_ID")
OIDC_CLIENT_SECRET = env_str("OIDC_CLIENT_SECRET")
SOCIALACCOUNT_PROVIDERS: dict[str, Any] = (
    {
        "openid_connect": {
            "APPS": [
                {
                    "provider_id": OIDC_PROVIDER_ID,
                    "name": env_str("OIDC_DISPLAY_NAME", "Single sign-on"),
                    "client_id": OIDC_CLIENT_ID,
                    "secret": OIDC_CLIENT_SECRET,
                    "settings": {"server_url": OIDC_SERVER_URL},
                }
            ]
        }
    }
    if OIDC_SERVER_URL and OIDC_CLIENT_ID
    else {}
)
# Failed logins are limited per account first, then per client address: once an
# account is locked its further attempts are refused before they count against
# the address, so hammering one account does not lock out its neighbours behind
# the same NAT. (allauth counts the rates in the order given.)
EGRESS_LOGIN_FAILURES_PER_ACCOUNT = env_int("EGRESS_LOGIN_FAILURES_PER_ACCOUNT", 5)
EGRESS_LOGIN_FAILURES_PER_ADDRESS = env_int("EGRESS_LOGIN_FAILURES_PER_ADDRESS", 30)
EGRESS_LOGIN_LOCKOUT_MINUTES = env_int("EGRESS_LOGIN_LOCKOUT_MINUTES", 5)
ACCOUNT_RATE_LIMITS = {
    # allauth's default flood guard (30 login posts a minute per address) would
    # itself lock out everyone behind an attacked address; keep it for floods only.
    "login": env_str("EGRESS_LOGIN_FLOOD_LIMIT", "300/m/ip"),
    "login_failed": (
        f"{EGRESS_LOGIN_FAILURES_PER_ACCOUNT}/{EGRESS_LOGIN_LOCKOUT_MINUTES}m/key,"
        f"{EGRESS_LOGIN_FAILURES_PER_ADDRESS}/{EGRESS_LOGIN_LOCKOUT_MINUTES}m/ip"
    ),
}
# Behind a reverse proxy, how many hops of X-Forwarded-For to trust for the client address.
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

# --- Security headers: Content-Security-Policy (django-csp) --------------------------------
# Scripts and styles only from our own origin, no inline script anywhere. Every
# environment sends it, so a violation shows up on a laptop before production.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}

# --- Language, time and static files ------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT: Path | None = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Hashed, compressed names (whitenoise), for production and for the image build's collectstatic.
PRODUCTION_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- E-mail: printed to the console by default; production sends through SMTP --------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "egress-portal@localhost")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)

# --- Cache: shared by every process (Redis in production; coalesces publishes, rate limits) -
CACHE_URL = env_str("CACHE_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL.startswith("redis://")
        else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(VAR_DIR / "cache")}
    )
}

# --- Logs: JSON lines (LOG_FORMAT=console for a terminal), request context from django-structlog
LOG_FORMAT = env_str("LOG_FORMAT", "json")
LOGGING = logging_config(fmt=LOG_FORMAT, level=env_str("LOG_LEVEL", "INFO"))
configure_structlog()
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = False  # behind a proxy the address is the proxy's; the request id correlates

# --- REST API: authentication, problems, schema, pagination, rate limits, idempotency ------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "exceptions.tokens.IntegrationTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "exceptions.tokens.TokenScopePermission",
    ],
    # The OpenAPI document lists every problem response (egress_portal.api_schema).
    "DEFAULT_SCHEMA_CLASS": "egress_portal.api_schema.ProblemAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "exceptions.api.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "drf_standardized_errors.handler.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "exceptions.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Each integration token, and each person across their session and tokens (foundation.ratelimit).
    "DEFAULT_THROTTLE_CLASSES": ["foundation.ratelimit.ApiRateThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Egress Portal API",
    "DESCRIPTION": "Self-service egress exceptions: request, approve, grant, expire.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The API surface is for the organisation's people and tools, not the world.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI from the sidecar package (ReDoc's bundle fetches its logo from a CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Every API error is an RFC 9457 problem (foundation.problems via drf-standardized-errors).
DRF_STANDARDIZED_ERRORS = {
    "EXCEPTION_HANDLER_CLASS": "foundation.problems.ProblemExceptionHandler",
    "EXCEPTION_FORMATTER_CLASS": "foundation.problems.ProblemFormatter",
    # A 500 is a problem document too, in every environment (the traceback is still logged).
    "ENABLE_IN_DEBUG_FOR_UNHANDLED_EXCEPTIONS": True,
}
# Counted in the shared cache, so every web process behind the same Redis shares one count.
EGRESS_API_RATE_LIMITS = {
    "token": env_str("EGRESS_API_RATE_LIMIT_TOKEN", "600/min"),
    "user": env_str("EGRESS_API_RATE_LIMIT_USER", "1200/min"),
}
# A POST with an Idempotency-Key is answered from its stored outcome for this long.
EGRESS_IDEMPOTENCY_HOURS = env_int("EGRESS_IDEMPOTENCY_HOURS", 24)
# How many destinations one POST /api/v1/preflight/ may check (an application's egress.yaml).
EGRESS_PREFLIGHT_MAX_DESTINATIONS = env_int("EGRESS_PREFLIGHT_MAX_DESTINATIONS", 100)

# --- Celery: JSON only, acknowledged after the run, time limits, three queues ------------------
# A worker killed mid-task leaves its message to be redelivered; a stuck delivery
# cannot hold a worker forever. Queues: `default`, `publish` (bundle publishes,
# slow and serialised) and `priority` (break-glass).
CELERY_BROKER_DIR = VAR_DIR / "celery"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# What a task prints (the console e-mail backend of `make run`) is output, not a warning.
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
CELERY_TASK_DEFAULT_QUEUE = "default"
# The queues every worker consumes unless told otherwise (`celery worker -Q`).
EGRESS_WORKER_QUEUES = ["default", "publish", "priority"]
CELERY_TASK_ROUTES = {"exceptions.publish_bundle": {"queue": "publish"}}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Schedules live in the database (django-celery-beat) so operators change them in
# the admin; the defaults are seeded by a migration (foundation/outbox/schedules.py),
# not read from here, so a restart never overwrites an operator's change.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Beat writes last-run times after this many sent tasks (about 20 s with the relays), not
# only every 3 minutes: the operations page and the beat health check read them.
CELERY_BEAT_SYNC_EVERY = 30
CELERY_BEAT_SCHEDULE: dict[str, Any] = {}
_filesystem_broker = CELERY_BROKER_URL.startswith("filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = (
    {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        # kombu's default is a `control/` folder in the working directory: nothing outside var/.
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
    if _filesystem_broker
    # Longer than any task may run (time limit), so Redis never redelivers a task still running.
    else {"visibility_timeout": 3600}
    if CELERY_BROKER_URL.startswith("redis://")
    else {}
)
if _filesystem_broker:
    # The filesystem transport has no fan-out exchange for remote control.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False

# --- Outbox: side effects delivered by the relay (foundation/outbox) --------------------------
# Which callable delivers each kind (dotted paths), and the relay queue of the kinds
# that are not delivered from `default`.
EGRESS_BREAKGLASS_PUBLISH_KIND = "bundle.publish.priority"
EGRESS_BREAKGLASS_MAIL_KIND = "mail.priority"
OUTBOX_HANDLERS: dict[str, str] = {
    "mail": "foundation.outbox.handlers.send_mail",
    "noop": "foundation.outbox.handlers.noop",
    "bundle.publish": "exceptions.delivery.deliver_publish",
    "audit.checkpoint": "audit.delivery.deliver_checkpoint",
    "webhook": "webhooks.delivery.deliver",
    # Break-glass: the ordinary publish and mail handlers, on the `priority` relay (no coalescing delay).
    EGRESS_BREAKGLASS_PUBLISH_KIND: "exceptions.delivery.deliver_publish",
    EGRESS_BREAKGLASS_MAIL_KIND: "foundation.outbox.handlers.send_mail",
}
OUTBOX_KIND_QUEUES: dict[str, str] = {
    "bundle.publish": "publish",
    EGRESS_BREAKGLASS_PUBLISH_KIND: "priority",
    EGRESS_BREAKGLASS_MAIL_KIND: "priority",
}
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 10)
OUTBOX_BACKOFF_BASE_SECONDS = env_int("OUTBOX_BACKOFF_BASE_SECONDS", 10)
OUTBOX_BACKOFF_MAX_SECONDS = env_int("OUTBOX_BACKOFF_MAX_SECONDS", 3600)
# A claimed row is due again after this long (its relay died); longer than any delivery.
OUTBOX_LEASE_SECONDS = env_int("OUTBOX_LEASE_SECONDS", 600)
OUTBOX_BATCH_SIZE = env_int("OUTBOX_BATCH_SIZE", 100)
OUTBOX_RELAY_MAX_SECONDS = env_int("OUTBOX_RELAY_MAX_SECONDS", 30)
# Delivered rows are deleted after this many days (parked and pending rows are never pruned).
OUTBOX_KEEP_DELIVERED_DAYS = env_int("OUTBOX_KEEP_DELIVERED_DAYS", 14)
# Queue a relay run right after a publish is asked for (a shortcut; beat is the guarantee).
OUTBOX_NUDGE = env_bool("OUTBOX_NUDGE", True)
# The Celery app a nudge is sent through (named, so the outbox never imports the project shell).
OUTBOX_CELERY_APP = "egress_portal.celery.app"

# --- Requests: what may be asked for (identities, destinations, limits, lifetimes) ------------
EGRESS_TRUST_DOMAIN = env_str("EGRESS_TRUST_DOMAIN", "cluster.local")
EGRESS_JUSTIFICATION_MIN_LENGTH = env_int("EGRESS_JUSTIFICATION_MIN_LENGTH", 30)
# Limits the request service enforces, so the form and the API say the same thing.
EGRESS_MAX_DESTINATIONS = env_int("EGRESS_MAX_DESTINATIONS", 50)
EGRESS_TICKET_REF_MAX_LENGTH = env_int("EGRESS_TICKET_REF_MAX_LENGTH", 100)
EGRESS_JUSTIFICATION_MAX_LENGTH = env_int("EGRESS_JUSTIFICATION_MAX_LENGTH", 10_000)
# Lifetime caps by risk tier.
EGRESS_LIFETIME_CAP_LOW_DAYS = env_int("EGRESS_LIFETIME_CAP_LOW_DAYS", 90)
EGRESS_LIFETIME_CAP_MEDIUM_DAYS = env_int("EGRESS_LIFETIME_CAP_MEDIUM_DAYS", 30)
EGRESS_LIFETIME_CAP_HIGH_DAYS = env_int("EGRESS_LIFETIME_CAP_HIGH_DAYS", 7)
EGRESS_LIFETIME_CAP_DIAGNOSTICS_HOURS = env_int("EGRESS_LIFETIME_CAP_DIAGNOSTICS_HOURS", 24)
# Destination names that are never egress (exact names, suffixes) and wildcard
# DNS services that answer with the IP address written in the name.
EGRESS_REFUSED_HOSTS = env_list(
    "EGRESS_REFUSED_HOSTS",
    [
        "metadata.google.internal",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
        "metadata.packet.net",
        "metadata.platformequinix.com",
    ],
)
EGRESS_REFUSED_SUFFIXES = env_list(
    "EGRESS_REFUSED_SUFFIXES", ["internal", "local", "localhost", "svc", "svc.cluster.local", "cluster.local"]
)
EGRESS_IP_ECHO_DOMAINS = env_list(
    "EGRESS_IP_ECHO_DOMAINS",
    ["nip.io", "sslip.io", "xip.io", "traefik.me", "localtest.me", "lvh.me", "vcap.me", "lndo.site", "backname.io"],
)

# --- Grants: expiry reminders -----------------------------------------------------------------
EGRESS_EXPIRING_SOON_DAYS = env_int("EGRESS_EXPIRING_SOON_DAYS", 14)
# Reminder thresholds in days before expiry, most distant first.
EGRESS_REMINDER_DAYS = sorted({int(d) for d in env_list("EGRESS_REMINDER_DAYS", ["7", "1"])}, reverse=True)

# --- Approvals: the policy file, pending requests, change windows -----------------------------
# The approval policy file (validated at start-up; its SHA-256 is the policy revision).
EGRESS_APPROVAL_POLICY_FILE = Path(
    env_str("EGRESS_APPROVAL_POLICY_FILE", str(BASE_DIR / "approvals" / "policies" / "default.yaml"))
)
# A pending request with no decision for this many days expires, and the requester is told.
EGRESS_PENDING_EXPIRY_DAYS = env_int("EGRESS_PENDING_EXPIRY_DAYS", 14)
# How far ahead the next change window is looked for before saying there is none.
EGRESS_CHANGE_WINDOW_HORIZON_DAYS = env_int("EGRESS_CHANGE_WINDOW_HORIZON_DAYS", 366)
# Approvers who can supply a still-missing approval are asked again after this many quiet hours (once a day).
EGRESS_APPROVAL_REMINDER_HOURS = env_int("EGRESS_APPROVAL_REMINDER_HOURS", 24)

# --- Break-glass: short, noisy, reviewed afterwards (MFA step-up: see Sign-in) ---------------
EGRESS_BREAKGLASS_DEFAULT_HOURS = env_int("EGRESS_BREAKGLASS_DEFAULT_HOURS", 4)
EGRESS_BREAKGLASS_MAX_HOURS = env_int("EGRESS_BREAKGLASS_MAX_HOURS", 4)
EGRESS_BREAKGLASS_MAX_ACTIVE_PER_USER = env_int("EGRESS_BREAKGLASS_MAX_ACTIVE_PER_USER", 2)
EGRESS_BREAKGLASS_REVIEW_HOURS = env_int("EGRESS_BREAKGLASS_REVIEW_HOURS", 24)
# A drill broadcasts to every security officer and approver: at most one per workload this often.
EGRESS_BREAKGLASS_DRILL_INTERVAL_MINUTES = env_int("EGRESS_BREAKGLASS_DRILL_INTERVAL_MINUTES", 60)
# Unreviewed uses are reminded to security officers at most this often.
EGRESS_BREAKGLASS_REMINDER_HOURS = env_int("EGRESS_BREAKGLASS_REMINDER_HOURS", 4)

# --- Secrets at rest: the key that seals TOTP seeds and webhook secrets in the database -------
# A Fernet key (foundation/encryption.py); old keys stay listed as retired until
# `manage.py reencrypt_secrets` has sealed everything under the new one.
EGRESS_SECRETS_KEY = env_str("EGRESS_SECRETS_KEY")
EGRESS_SECRETS_KEY_RETIRED: list[str] = split_keys(env_str("EGRESS_SECRETS_KEY_RETIRED"))

# --- Policy bundle: signing, the policy repository, publishing, the OPA bundle endpoint -------
# PEM private key (EC P-256 or RSA) that signs bundles and audit checkpoints; see foundation/signing.py.
EGRESS_SIGNING_KEY = env_str("EGRESS_SIGNING_KEY")
POLICY_REPO_URL = env_str("POLICY_REPO_URL", str(VAR_DIR / "policy.git"))
POLICY_REPO_BRANCH = env_str("POLICY_REPO_BRANCH", "main")
POLICY_REPO_SUBDIR = env_str("POLICY_REPO_SUBDIR", "")
POLICY_REPO_USERNAME = env_str("POLICY_REPO_USERNAME")
POLICY_REPO_PASSWORD = env_str("POLICY_REPO_PASSWORD")
POLICY_WORK_DIR = Path(env_str("POLICY_WORK_DIR", str(VAR_DIR / "policy-work")))
POLICY_GIT_AUTHOR_NAME = env_str("POLICY_GIT_AUTHOR_NAME", "Egress Portal")
POLICY_GIT_AUTHOR_EMAIL = env_str("POLICY_GIT_AUTHOR_EMAIL", "egress-portal@localhost")
# Grant changes publish after this many seconds, so a burst becomes one commit.
BUNDLE_PUBLISH_DELAY_SECONDS = env_int("BUNDLE_PUBLISH_DELAY_SECONDS", 2)
EGRESS_AUTO_PUBLISH = env_bool("EGRESS_AUTO_PUBLISH", True)
ISTIO_NAMESPACE = env_str("ISTIO_NAMESPACE", "istio-system")
# Every Kubernetes object in the bundle stays under this many bytes (etcd refuses 1.5 MiB).
EGRESS_BUNDLE_MAX_OBJECT_BYTES = env_int("EGRESS_BUNDLE_MAX_OBJECT_BYTES", 512 * 1024)
# The generated CODEOWNERS of the policy repository: the security team owns the
# shared policy library and everything no team owns; each team its teams/<slug>/
# directory (EGRESS_CODEOWNERS_TEAM with {team}, or "slug=@handle,..." overrides).
EGRESS_CODEOWNERS_SECURITY = env_str("EGRESS_CODEOWNERS_SECURITY", "@egress-portal/security")
EGRESS_CODEOWNERS_TEAM = env_str("EGRESS_CODEOWNERS_TEAM", "@egress-portal/{team}")
EGRESS_CODEOWNERS = env_str("EGRESS_CODEOWNERS")
# Provider range files (AWS ip-ranges.json, Google cloud.json): where
# `manage.py sync_provider_ranges` loads them from ("aws=URL-or-path,google=...").
EGRESS_PROVIDER_RANGE_SOURCES = env_str(
    "EGRESS_PROVIDER_RANGE_SOURCES",
    "aws=https://ip-ranges.amazonaws.com/ip-ranges.json,google=https://www.gstatic.com/ipranges/cloud.json",
)
EGRESS_PROVIDER_RANGES_TIMEOUT = env_int("EGRESS_PROVIDER_RANGES_TIMEOUT", 30)
# OPA polls /bundles/egress.tar.gz with this bearer token.
OPA_BUNDLE_TOKEN = env_str("OPA_BUNDLE_TOKEN")
# Each publish stores its OPA archive in the database and the endpoint serves it; this many
# stored archives are kept (the served one and the newest others).
OPA_BUNDLE_ARTIFACTS_KEPT = env_int("OPA_BUNDLE_ARTIFACTS_KEPT", 5)
# OPA long polling on the bundle endpoint (Prefer: wait=N): the longest wait
# granted, the waiting requests per process (more get an immediate answer;
# run gunicorn with threads, e.g. --threads 8), how often the one watcher per
# process re-reads the served revision without LISTEN/NOTIFY (SQLite), and how
# often it re-reads it anyway on PostgreSQL, where a NOTIFY from the publish
# wakes it (a notification lost with a dropped connection is caught then).
OPA_LONG_POLL_MAX_WAIT_SECONDS = env_int("OPA_LONG_POLL_MAX_WAIT_SECONDS", 60)
OPA_LONG_POLL_MAX_WAITERS = env_int("OPA_LONG_POLL_MAX_WAITERS", 16)
OPA_LONG_POLL_INTERVAL_SECONDS = float(env_str("OPA_LONG_POLL_INTERVAL_SECONDS", "0.2"))
OPA_LONG_POLL_RECHECK_SECONDS = float(env_str("OPA_LONG_POLL_RECHECK_SECONDS", "5"))

# --- Audit: checkpoints signed into the policy repository ------------------------------------
# The audit checkpoint writer's own clone of the policy repository (never the publisher's).
AUDIT_CHECKPOINT_WORK_DIR = Path(env_str("AUDIT_CHECKPOINT_WORK_DIR", str(VAR_DIR / "audit-checkpoint-work")))
# A publish that changed the bundle asks for an audit checkpoint this many seconds later;
# publishes in between share it (one pending `audit.checkpoint` outbox row).
AUDIT_CHECKPOINT_DELAY_SECONDS = env_int("AUDIT_CHECKPOINT_DELAY_SECONDS", 30)
# The audit key seals every event and the chain head (HMAC-SHA256, audit/sealing.py): a random
# secret of at least 32 characters kept outside the database, not the bundle signing key.
# Older keys whose seals must still verify after a rotation: EGRESS_AUDIT_KEY_RETIRED (comma-separated).
EGRESS_AUDIT_KEY = env_str("EGRESS_AUDIT_KEY")
EGRESS_AUDIT_KEY_RETIRED = env_str("EGRESS_AUDIT_KEY_RETIRED")

# --- Traffic: ingestion from egress points and stale revocation --------------------------------
# The largest body a gateway may post (after gunzip), and how long digests are kept
# to recognise a retried batch (records older than this are refused).
EGRESS_INGEST_MAX_BYTES = env_int("EGRESS_INGEST_MAX_BYTES", 32 * 1024 * 1024)
EGRESS_INGEST_DEDUP_DAYS = env_int("EGRESS_INGEST_DEDUP_DAYS", 7)
# Posts each gateway token may make per minute (counted in the shared cache; 0: no limit).
# Over it the answer is 429 with Retry-After, which OPA's decision-log uploader backs off on.
EGRESS_INGEST_RATE_PER_MINUTE = env_int("EGRESS_INGEST_RATE_PER_MINUTE", 600)
# Days without traffic before a notice (per risk tier), days of grace after it,
# and how recent a gateway's last report on an identity must be for its silence to count.
EGRESS_STALE_DAYS = env_int("EGRESS_STALE_DAYS", 30)
EGRESS_STALE_DAYS_BY_TIER = {
    tier: env_int(f"EGRESS_STALE_DAYS_{tier.upper()}", EGRESS_STALE_DAYS) for tier in ("low", "medium", "high")
}
EGRESS_STALE_GRACE_DAYS = env_int("EGRESS_STALE_GRACE_DAYS", 7)
EGRESS_STALE_FEED_FRESH_HOURS = env_int("EGRESS_STALE_FEED_FRESH_HOURS", 48)

# --- Webhooks: signed deliveries of every state change ----------------------------------------
# Loopback, private, link-local and metadata targets are refused (at save and after DNS at delivery) unless this is on.
EGRESS_WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("EGRESS_WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
EGRESS_WEBHOOK_TIMEOUT_SECONDS = env_int("EGRESS_WEBHOOK_TIMEOUT_SECONDS", 10)

# --- Health and metrics: /healthz, /readyz, /metrics ------------------------------------------
# /readyz: each dependency gets this long to answer; the bundle must have been published
# (or confirmed unchanged) this recently (the safety-net republish runs every five minutes).
READY_CHECK_TIMEOUT_SECONDS = env_int("READY_CHECK_TIMEOUT_SECONDS", 3)
READY_MAX_PUBLISH_AGE_SECONDS = env_int("READY_MAX_PUBLISH_AGE_SECONDS", 900)
# /metrics asks for this bearer token when it is set (always in production).
METRICS_TOKEN = env_str("METRICS_TOKEN")
