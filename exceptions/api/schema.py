"""OpenAPI description of the integration-token scheme (registered when the app is ready)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class IntegrationTokenScheme(OpenApiAuthenticationExtension):
    target_class = "exceptions.tokens.IntegrationTokenAuthentication"
    name = "integrationToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "egp_<prefix>_<secret>",
            "description": "A scoped integration token (manage.py create_api_token); it acts as its user.",
        }
