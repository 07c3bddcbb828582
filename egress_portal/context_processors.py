from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from exceptions.access import roles_for


def roles(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"roles": None}
    return {"roles": roles_for(user)}
