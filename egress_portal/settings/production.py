"""Production: every secret and address comes from the environment."""

from __future__ import annotations

from audit.sealing import parse_key
from egress_portal.settings.base import *  # noqa: F403
from egress_portal.settings.base import PRODUCTION_STORAGES
from egress_portal.settings.env import env_bool, env_int, env_list, env_required, env_str
from foundation.encryption import key_problem

DEBUG = False
SECRET_KEY = env_required("SECRET_KEY")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("ALLOWED_HOSTS must list the portal's host names in production.")
env_required("DATABASE_URL")
CELERY_BROKER_URL = env_required("CELERY_BROKER_URL")
# /metrics tells anyone who can reach it how many grants exist and how old the
# queue is: in production it always requires its bearer token.
METRICS_TOKEN = env_required("METRICS_TOKEN")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Container health checks speak plain HTTP inside the pod.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
STORAGES = PRODUCTION_STORAGES
CACHE_URL = env_str("CACHE_URL") or (CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis://") else "")
if CACHE_URL.startswith("redis://"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}

# OPA verifies every bundle against this key's public half: an unsigned
# bundle in production would let anyone who can push to the policy
# repository add a grant.
EGRESS_SIGNING_KEY = env_required("EGRESS_SIGNING_KEY")
# TOTP seeds and webhook secrets are sealed with this key (foundation/encryption.py);
# a database copy without it yields none of them. Never generated in production.
EGRESS_SECRETS_KEY = env_required("EGRESS_SECRETS_KEY")
if _problem := key_problem(EGRESS_SECRETS_KEY):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"EGRESS_SECRETS_KEY {_problem}; it must be a Fernet key (32 bytes, url-safe base64).")
# Seals every audit event and the chain head; without it someone with the database could
# rewrite the newest events unnoticed. Its own secret, kept out of the database (docs/audit.md).
EGRESS_AUDIT_KEY = env_required("EGRESS_AUDIT_KEY")
parse_key(EGRESS_AUDIT_KEY, "EGRESS_AUDIT_KEY")  # a short or PEM key fails at start, not at the first write
