"""Every number a person or a client sends is read by the one bounded parser.

Walks every form and input serializer the project defines, so a field added
later with Django's or DRF's own IntegerField (which take '٤٨', '+443', 443.0
and numbers too large for a timedelta) fails here, not in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django import forms
from django.apps import apps
from rest_framework import serializers

from exceptions.api.serializers import BoundedIntegerField as ApiBoundedIntegerField
from exceptions.forms import BoundedIntegerField

PROJECT = ("exceptions", "approvals", "audit", "accounts", "outcomes", "egress_portal")
NUMBER_FIELDS = (forms.IntegerField, forms.FloatField, forms.DecimalField)
NUMBER_SERIALIZER_FIELDS = (serializers.IntegerField, serializers.FloatField, serializers.DecimalField)


def _load_project_modules() -> None:
    import importlib
    import pkgutil

    for config in apps.get_app_configs():
        if not config.name.startswith(PROJECT):
            continue
        package = importlib.import_module(config.name)
        for info in pkgutil.walk_packages(package.__path__, config.name + "."):
            if ".migrations" in info.name or ".management" in info.name or info.name.endswith("tests"):
                continue
            importlib.import_module(info.name)


def _subclasses(base: type) -> Iterator[type]:
    for sub in base.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _ours(cls: type) -> bool:
    return cls.__module__.startswith(PROJECT)


def _serializer_fields(name: str, field: Any) -> Iterator[tuple[str, Any]]:
    yield name, field
    child = getattr(field, "child", None)
    if child is not None:
        yield from _serializer_fields(f"{name}[]", child)


def test_every_form_number_field_is_bounded() -> None:
    _load_project_modules()
    forms_found = [cls for cls in _subclasses(forms.BaseForm) if _ours(cls)]
    assert any(cls.__name__ == "DecisionForm" for cls in forms_found)
    loose = [
        f"{cls.__module__}.{cls.__name__}.{name}"
        for cls in forms_found
        for name, field in getattr(cls, "base_fields", {}).items()
        if isinstance(field, NUMBER_FIELDS) and not isinstance(field, BoundedIntegerField)
    ]
    assert loose == [], "read these with exceptions.forms.BoundedIntegerField"


def test_every_input_serializer_number_field_is_bounded() -> None:
    _load_project_modules()
    # Output-only serializers (named ...Output) render numbers, they never read one.
    found = [
        cls for cls in _subclasses(serializers.BaseSerializer) if _ours(cls) and not cls.__name__.endswith("Output")
    ]
    assert any(cls.__name__ == "ApproveInputSerializer" for cls in found)
    loose = [
        f"{cls.__module__}.{cls.__name__}.{path}"
        for cls in found
        for name, declared in getattr(cls, "_declared_fields", {}).items()
        for path, field in _serializer_fields(name, declared)
        if isinstance(field, NUMBER_SERIALIZER_FIELDS)
        and not field.read_only
        and not isinstance(field, ApiBoundedIntegerField)
    ]
    assert loose == [], "read these with exceptions.api.serializers.BoundedIntegerField"
