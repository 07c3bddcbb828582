"""ASGI entry points, served by uvicorn.

``bundles``: OPA's bundle endpoint alone (``/bundles/egress.tar.gz``, plus ``/healthz``),
the async server deployments route ``/bundles/`` to (``uvicorn egress_portal.asgi:bundles``;
the compose file's and the Procfile's ``bundles`` process). ``application``: the same
endpoint in front of Django's ASGI application for everything else. The pages are
served through WSGI (gunicorn, runserver): Django runs a synchronous view on one
thread per process under ASGI (docs/operations.md measures it).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "egress_portal.settings.local")

django_application = get_asgi_application()

from exceptions.bundle_asgi import BundleApp  # noqa: E402 - needs the settings and apps set up above

application = BundleApp(fallback=django_application)
bundles = BundleApp()
