FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=egress_portal.settings.production \
    DB_CONN_MAX_AGE=60
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# Build-time settings: production's static storage, no secrets in the image.
RUN DJANGO_SETTINGS_MODULE=egress_portal.settings.build python manage.py collectstatic --noinput
RUN useradd --create-home --uid 10001 portal && mkdir -p /var/lib/egress-portal && chown portal /var/lib/egress-portal
USER portal
# 8000: the portal (gunicorn); 8001: OPA's bundle polls (uvicorn egress_portal.asgi:bundles, the compose file's bundles).
EXPOSE 8000 8001
CMD ["gunicorn", "egress_portal.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "8", "--access-logfile", "-"]
