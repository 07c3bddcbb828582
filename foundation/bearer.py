"""The one reading of ``Authorization: Bearer <token>`` for the shared-secret endpoints
(/metrics, the OPA bundle)."""

from __future__ import annotations

import hmac

from django.http import HttpRequest


def bearer_token(request: HttpRequest) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def has_bearer_token(request: HttpRequest, expected: str) -> bool:
    """Constant-time comparison of bytes: compare_digest refuses non-ASCII str, and a
    header of 'Bearer é' must be a 401, never a 500."""
    return bool(expected) and hmac.compare_digest(bearer_token(request).encode(), expected.encode())
