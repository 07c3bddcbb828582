"""ASGI entry point (``uvicorn egress_portal.asgi:application``); the Dockerfile serves WSGI through gunicorn."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "egress_portal.settings.local")

application = get_asgi_application()
