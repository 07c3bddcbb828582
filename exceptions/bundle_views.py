"""Pages and endpoints around the policy bundle: explain, the OPA bundle service, publications."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from exceptions.bundle_watch import revision_watch
from exceptions.explain import explain
from exceptions.forms import ExplainForm
from exceptions.models import BundlePublication
from exceptions.selectors import explainable_identities, served_archive, served_bundle
from exceptions.services.publications import ensure_served_bundle
from foundation.bearer import has_bearer_token


@login_required
def explain_page(request: HttpRequest) -> HttpResponse:
    form = ExplainForm(request.GET or None)
    result = None
    if form.is_valid():
        result = explain(
            identity=form.cleaned_data["identity"],
            host=form.cleaned_data["host"],
            port=form.cleaned_data["port"],
            protocol=form.cleaned_data["protocol"],
            user=request.user,
        )
    return render(
        request,
        "exceptions/explain.html",
        {"form": form, "result": result, "identities": explainable_identities(request.user)},
        status=400 if form.errors else 200,
    )


def authorised(request: HttpRequest) -> bool:
    return has_bearer_token(request, settings.OPA_BUNDLE_TOKEN)


def unauthorised() -> HttpResponse:
    response = HttpResponse("A valid bearer token is required.\n", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = 'Bearer realm="egress-portal"'
    return response


def known_etags(request: HttpRequest) -> list[str]:
    """The entity tags of ``If-None-Match``, as sent (quoted)."""
    return [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]


def bundle_response(*, revision: str, archive: bytes | None, long_poll: bool) -> HttpResponse:
    """304 (``archive`` None) or 200 with ``archive``; the ETag is the quoted revision."""
    if archive is None:
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(archive, content_type=LONG_POLL_CONTENT_TYPE if long_poll else "application/gzip")
        response["Content-Length"] = str(len(archive))  # CommonMiddleware, which would set it, is skipped
    response["ETag"] = f'"{revision}"'
    response["Cache-Control"] = "no-cache"
    return response


# OPA takes this content type as "the server long-polls" (and keeps long polling).
LONG_POLL_CONTENT_TYPE = "application/vnd.openpolicyagent.bundles"
_PREFER_WAIT = re.compile(r"(?:^|[;,\s])wait=(\d+)", re.IGNORECASE)


def prefer_wait(request: HttpRequest) -> int | None:
    """Seconds from ``Prefer: wait=N`` (OPA's long polling), capped; None without it."""
    match = _PREFER_WAIT.search(request.headers.get("Prefer", ""))
    return min(int(match.group(1)), settings.OPA_LONG_POLL_MAX_WAIT_SECONDS) if match else None


# The archives this process served last, by SHA-256: a 200 then reads only the pointer row.
# An optimisation only (a cold process reads the bytes from the database); an archive's bytes
# never change under its digest, so there is nothing to invalidate.
_ARCHIVES: dict[str, tuple[str, bytes]] = {}
_ARCHIVES_KEPT = 2
_ARCHIVES_LOCK = threading.Lock()


def _archive(sha256: str) -> tuple[str, bytes]:
    """The served (revision, archive): this process's copy of ``sha256``'s bytes, or the database's."""
    with _ARCHIVES_LOCK:
        found = _ARCHIVES.get(sha256)
    if found is not None:
        return found
    served = served_archive()
    if served is None:  # pragma: no cover - the pointer row is never deleted
        raise RuntimeError("the served bundle disappeared")
    revision, digest, archive = served
    with _ARCHIVES_LOCK:
        _ARCHIVES[digest] = (revision, archive)
        while len(_ARCHIVES) > _ARCHIVES_KEPT:
            del _ARCHIVES[next(iter(_ARCHIVES))]
    return revision, archive


def forget_archives() -> None:
    """Drop this process's copies of served archives (tests: the next 200 reads the database)."""
    with _ARCHIVES_LOCK:
        _ARCHIVES.clear()


@require_GET
def opa_bundle(request: HttpRequest) -> HttpResponse:
    """The current OPA bundle for OPA's bundle service (bearer token, ETag, 304, long polling).

    What is served is the archive the last publish stored: a 304 reads one
    primary-key row, a 200 that row and (once per process and revision) the
    stored bytes. With ``Prefer: wait=N`` and an ``If-None-Match`` naming the
    current revision, the answer waits until a publish moves the revision
    (then 200 with the new bundle) or N seconds pass (then 304).
    """
    if not authorised(request):
        return unauthorised()
    known = known_etags(request)
    wait = prefer_wait(request)
    revision, sha256 = served_bundle() or ensure_served_bundle()
    if wait and f'"{revision}"' in known and revision_watch().wait(known=revision, timeout=wait):
        revision, sha256 = served_bundle() or (revision, sha256)
    if f'"{revision}"' in known:
        return bundle_response(revision=revision, archive=None, long_poll=bool(wait))
    revision, archive = _archive(sha256)
    return bundle_response(revision=revision, archive=archive, long_poll=bool(wait))


class OpaBundleMiddleware:
    """Answer OPA's bundle polls before the page middleware (sessions, CSRF, sign-in, messages,
    MFA enrolment, request logging), as WhiteNoise answers static files.

    A poll carries a bearer token and no cookie, and a fleet asks many times a second:
    what it costs beyond reading the pointer row is the stack it passes through.
    Placed right after ``SecurityMiddleware`` (HTTPS redirect, HSTS).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.path = ""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not self.path:
            self.path = reverse("opa-bundle")
        if request.path == self.path:
            return opa_bundle(request)
        return self.get_response(request)


@login_required
def publications(request: HttpRequest) -> HttpResponse:
    page = Paginator(BundlePublication.objects.all(), 50).get_page(request.GET.get("page"))
    return render(request, "exceptions/publications.html", {"page": page})
