from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from exceptions.validators import validate_destination_host, validate_identity, validate_port, validate_protocol

GOOD_HOSTS = [
    ("api.partner.example", "api.partner.example"),
    ("API.Partner.Example", "api.partner.example"),
    ("api.partner.example.", "api.partner.example"),
    ("  registry.npmjs.org  ", "registry.npmjs.org"),
    ("pypi.org", "pypi.org"),
    ("files.pythonhosted.org", "files.pythonhosted.org"),
    ("*.pythonhosted.org", "*.pythonhosted.org"),
    ("*.api.partner.example", "*.api.partner.example"),
    ("*.partner.co.uk", "*.partner.co.uk"),
    ("*.PARTNER.example.", "*.partner.example"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("BÜCHER.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("*.bücher.example", "*.xn--bcher-kva.example"),
    ("münchen.de", "xn--mnchen-3ya.de"),
    ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
    ("a-b.example", "a-b.example"),
    ("1password.com", "1password.com"),
    ("s3.eu-west-1.amazonaws.com", "s3.eu-west-1.amazonaws.com"),
    ("github.io", "github.io"),
    ("a" * 63 + ".example", "a" * 63 + ".example"),
    (".".join(["a" * 49] * 5) + ".ex", ".".join(["a" * 49] * 5) + ".ex"),
]

BAD_HOSTS = [
    ("", "required"),
    ("   ", "required"),
    ("*", "wildcard_position"),
    ("*.com", "public_suffix_wildcard"),
    ("*.co.uk", "public_suffix_wildcard"),
    ("*.github.io", "public_suffix_wildcard"),
    ("*.*.partner.example", "wildcard_position"),
    ("api.*.partner.example", "wildcard_position"),
    ("*partner.example", "wildcard_position"),
    ("partner.*", "wildcard_position"),
    ("127.0.0.1", "ip_literal"),
    ("10.0.0.8", "ip_literal"),
    ("2130706433", "ip_literal"),
    ("0x7f000001", "ip_literal"),
    ("0177.0.0.1", "ip_literal"),
    ("0x7f.0.0.1", "ip_literal"),
    ("127.1", "ip_literal"),
    ("::1", "ip_literal"),
    ("[::1]", "ip_literal"),
    ("2001:db8::1", "ip_literal"),
    ("[2001:db8::1]", "ip_literal"),
    ("fe80::1%eth0", "ip_literal"),
    ("::ffff:127.0.0.1", "ip_literal"),
    ("localhost", "localhost"),
    ("LOCALHOST.", "localhost"),
    ("app.localhost", "localhost"),
    ("intranet", "single_label"),
    ("api..partner.example", "empty_label"),
    ("api.partner.example..", "empty_label"),
    (".partner.example", "empty_label"),
    ("-api.partner.example", "invalid_name"),
    ("api-.partner.example", "invalid_name"),
    ("api_v2.partner.example", "invalid_character"),
    ("a" * 64 + ".example", "label_too_long"),
    (".".join(["a" * 50] * 5) + ".ex", "too_long"),
    ("xn--zz.example", "invalid_name"),
    ("https://api.partner.example", "not_a_host"),
    ("api.partner.example/path", "not_a_host"),
    ("user@api.partner.example", "not_a_host"),
    ("api.partner.example:443", "port_in_host"),
    ("api partner.example", "not_a_host"),
]


def test_table_has_at_least_forty_cases() -> None:
    assert len(GOOD_HOSTS) + len(BAD_HOSTS) >= 40


@pytest.mark.parametrize(("value", "expected"), GOOD_HOSTS)
def test_valid_hosts_are_canonicalised(value: str, expected: str) -> None:
    assert validate_destination_host(value) == expected


@pytest.mark.parametrize(("value", "code"), BAD_HOSTS)
def test_invalid_hosts_are_refused_with_a_specific_reason(value: str, code: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_destination_host(value)
    assert info.value.code == code, info.value.messages
    assert info.value.messages[0].strip()


def test_ip_literal_message_says_to_use_the_dns_name() -> None:
    with pytest.raises(ValidationError) as info:
        validate_destination_host("2130706433")
    assert "DNS name" in info.value.messages[0]


def test_public_suffix_wildcard_message_names_the_suffix_and_a_fix() -> None:
    with pytest.raises(ValidationError) as info:
        validate_destination_host("*.co.uk")
    message = info.value.messages[0]
    assert "co.uk" in message and "*.partner.example" in message


@pytest.mark.parametrize(("value", "expected"), [(1, 1), ("443", 443), (" 8443 ", 8443), (65535, 65535)])
def test_valid_ports(value: object, expected: int) -> None:
    assert validate_port(value) == expected


@pytest.mark.parametrize("value", [0, -1, 65536, "http", "", None, "44.3"])
def test_invalid_ports(value: object) -> None:
    with pytest.raises(ValidationError):
        validate_port(value)


@pytest.mark.parametrize(("value", "expected"), [("tcp", "tcp"), ("UDP", "udp")])
def test_protocols(value: str, expected: str) -> None:
    assert validate_protocol(value) == expected


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValidationError, match="choose one of: tcp, udp"):
        validate_protocol("icmp")


@pytest.mark.parametrize(
    ("value", "kind", "canonical"),
    [
        ("spiffe://Example.ORG/ns/pay/sa/api", "spiffe", "spiffe://example.org/ns/pay/sa/api"),
        ("spiffe://example.org/workload/batch-7", "spiffe", "spiffe://example.org/workload/batch-7"),
        ("payments/checkout-api", "kubernetes", "spiffe://cluster.local/ns/payments/sa/checkout-api"),
        ("arn:aws:iam::123456789012:role/settlement", "aws_role", "arn:aws:iam::123456789012:role/settlement"),
        ("arn:aws:iam::123456789012:role/svc/ci/Runner", "aws_role", "arn:aws:iam::123456789012:role/svc/ci/Runner"),
        ("Telemetry@my-project-1.iam.gserviceaccount.com", "gcp_sa", "telemetry@my-project-1.iam.gserviceaccount.com"),
    ],
)
def test_identities_are_canonicalised(value: str, kind: str, canonical: str) -> None:
    identity = validate_identity(value)
    assert (identity.kind, identity.canonical) == (kind, canonical)


def test_kubernetes_identity_uses_the_configured_trust_domain() -> None:
    identity = validate_identity("ci/runner", trust_domain="prod.example.org")
    assert identity.canonical == "spiffe://prod.example.org/ns/ci/sa/runner"
    assert (identity.namespace, identity.service_account) == ("ci", "runner")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "10.0.0.1",
        "spiffe://",
        "spiffe://example.org",
        "spiffe://example.org/ns//sa/x",
        "spiffe://exa mple.org/ns/a/sa/b",
        "arn:aws:iam::12345:role/x",
        "arn:aws:s3:::bucket",
        "someone@gmail.com",
        "Payments_Team/api",
        "a/b/c",
    ],
)
def test_invalid_identities_are_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        validate_identity(value)
