# ruff: noqa: RUF001 - the look-alike characters are the point of these tests
"""What the user typed is what is allowed: look-alikes, invisible characters,
names that are not egress, IP addresses hidden in names; the portal's own words."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.template import Context, Template
from django.test import Client

from exceptions.validators import validate_destination_host, validate_port

pytestmark = pytest.mark.django_db


def refusal(host: str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate_destination_host(host)
    return info.value


@pytest.mark.parametrize(
    ("host", "scripts"),
    [
        ("pаypal.com", "Cyrillic and Latin"),
        ("gοοgle.com", "Greek and Latin"),
        ("xn--pypal-4ve.com", "Cyrillic and Latin"),
    ],
)
def test_a_label_mixing_scripts_is_refused_in_both_forms_with_the_scripts_named(host: str, scripts: str) -> None:
    error = refusal(host)
    assert error.code == "mixed_script"
    [message] = error.messages
    assert scripts in message and "punycode xn--" in message


@pytest.mark.parametrize("host", ["аррӏе.com", "xn--80ak6aa92e.com", "ѕсоре.example"])
def test_a_whole_script_look_alike_of_a_latin_name_is_refused(host: str) -> None:
    error = refusal(host)
    assert error.code == "whole_script_confusable"
    assert "Cyrillic" in error.messages[0] and "(punycode xn--" in error.messages[0]


@pytest.mark.parametrize(
    ("host", "ascii_host"),
    [
        ("bücher.example", "xn--bcher-kva.example"),
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
        ("παράδειγμα.δοκιμή", "xn--hxajbheg2az3al.xn--jxalpdlp"),
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
    ],
)
def test_a_single_script_idn_is_accepted(host: str, ascii_host: str) -> None:
    assert validate_destination_host(host) == ascii_host


@pytest.mark.parametrize("char", ["\u200b", "\u200c", "\u200d", "\u00ad", "\u202e", "\u2066", "\ufeff", "\u2060"])
def test_invisible_characters_are_refused_never_stripped(char: str) -> None:
    error = refusal(f"api.part{char}ner.example")
    assert error.code == "invisible_character"
    assert f"U+{ord(char):04X}" in error.messages[0]


@pytest.mark.parametrize(
    ("host", "code"),
    [
        ("metadata.google.internal", "metadata_name"),
        ("metadata", "metadata_name"),
        ("instance-data", "metadata_name"),
        ("db.internal", "internal_name"),
        ("printer.local", "internal_name"),
        ("app.localhost", "localhost"),
        ("api.svc", "internal_name"),
        ("api.payments.svc.cluster.local", "internal_name"),
        ("*.cluster.local", "internal_name"),
        ("10.0.0.1.nip.io", "ip_in_name"),
        ("10-0-0-1.sslip.io", "ip_in_name"),
        ("*.nip.io", "ip_in_name"),
        ("app.169.254.169.254.example.com", "ip_in_name"),
    ],
)
def test_names_that_are_not_egress_are_refused_with_a_reason(host: str, code: str) -> None:
    assert refusal(host).code == code


def test_the_refused_lists_are_settings(settings: Any) -> None:
    settings.EGRESS_REFUSED_SUFFIXES = ["corp"]
    settings.EGRESS_IP_ECHO_DOMAINS = ["echo.example"]
    assert refusal("wiki.corp").code == "internal_name"
    assert refusal("1-2-3-4.echo.example").code == "ip_in_name"
    assert validate_destination_host("db.internal") == "db.internal"


@pytest.mark.parametrize("host", ["a_b.example", "ex😀.com", "xn--a.example", "a--b-.example", "ab--cd.example"])
def test_messages_are_the_portals_own_words_not_the_idna_librarys(host: str) -> None:
    for message in refusal(host).messages:
        assert host in message or host.split(".")[0] in message
        for idna_words in ("Codepoint", "not allowed at position", "Unknown", "IDNA", "label empty or too long"):
            assert idna_words not in message


@pytest.mark.parametrize("port", ["1.0", "٤٤٣", "４４３", "443.", "0443x"])
def test_ports_accept_ascii_digits_only(port: str) -> None:
    with pytest.raises(ValidationError):
        validate_port(port)


def test_an_idn_is_shown_in_unicode_and_punycode() -> None:
    html = Template("{% load hosts %}{% show_host host 443 'tcp' %}").render(Context({"host": "xn--bcher-kva.example"}))
    assert "bücher.example:443/tcp" in html and "xn--bcher-kva.example" in html
    plain = Template("{% load hosts %}{% show_host host %}").render(Context({"host": "api.partner.example"}))
    assert "punycode" not in plain


def test_request_and_grant_pages_show_both_forms(client: Client, submit: Any, approver: Any, requester: Any) -> None:
    from approvals.services import approve_request

    request = submit(destinations=[{"host": "bücher.example", "port": 443}])
    [grant] = approve_request(actor=approver, request=request)
    client.force_login(requester)
    for url in (f"/requests/{request.pk}/", f"/grants/{grant.pk}/", "/grants/"):
        body = client.get(url).content.decode()
        assert "bücher.example" in body and "xn--bcher-kva.example" in body, url


@pytest.mark.parametrize(
    ("host", "code", "says"),
    [
        ("-bad-.example.com", "invalid_name", "may not start or end with a hyphen"),
        ("bad-.example.com", "invalid_name", "may not start or end with a hyphen"),
        ("api.-partner.example", "invalid_name", "may not start or end with a hyphen"),
        ("ab--cd.example.com", "invalid_name", "third and fourth places"),
        ("xn--zz.example.com", "invalid_name", "not valid punycode"),
    ],
)
def test_a_plain_ascii_name_gets_the_ascii_rule_it_broke(host: str, code: str, says: str) -> None:
    error = refusal(host)
    assert error.code == code
    assert says in error.messages[0]
    assert "internationalised host name" not in error.messages[0]
