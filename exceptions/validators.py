"""Pure validators for destinations and workload identities.

Names over numbers: a destination is a DNS name (exact, or one leading ``*.``
label above something narrower than a public suffix), never an IP literal.
Each error says what is wrong and how to fix it.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

import idna
from django.conf import settings
from django.core.exceptions import ValidationError
from publicsuffixlist import PublicSuffixList

from exceptions.risk import format_duration

MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# WHATWG URL parsing treats a host whose last label is a number (decimal, or
# 0x-hex) as IPv4, so 2130706433, 0177.0.0.1 and 0x7f.1 all reach 127.0.0.1.
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_LOCAL_NAMES = {"localhost", "localhost.localdomain"}


@lru_cache(maxsize=1)
def _public_suffixes() -> PublicSuffixList:
    # The list ships inside the package: no download at run time.
    return PublicSuffixList()


def _ip_error(value: str) -> ValidationError:
    return ValidationError(
        f"'{value}' is an IP address literal. Egress rules are written for DNS names, "
        "not addresses: enter the DNS name of the service (for example api.partner.example).",
        code="ip_literal",
    )


def _looks_like_ip(value: str) -> bool:
    candidate = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        pass
    else:
        return True
    last_label = candidate.rstrip(".").rsplit(".", 1)[-1]
    return bool(_NUMERIC_LABEL.match(last_label)) or (
        ":" in candidate and all(c in "0123456789abcdef:." for c in candidate)
    )


def is_wildcard(host: str) -> bool:
    return host.startswith("*.")


_CODEPOINT = re.compile(r"U\+([0-9A-Fa-f]{4,6})")


def _describe_char(char: str) -> str:
    return f"'{char}' (U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')})"


def _to_ascii(name: str, original: str) -> str:
    # The IDNA library's own messages are for programmers; these are the portal's words.
    try:
        encoded = idna.encode(name, uts46=True, std3_rules=True, transitional=False).decode("ascii")
    except idna.InvalidCodepoint as exc:
        found = _CODEPOINT.search(str(exc))
        what = _describe_char(chr(int(found.group(1), 16))) if found else "a character"
        raise ValidationError(
            f"'{original}' contains {what}, which is not allowed in a host name. Use letters, digits and hyphens only.",
            code="invalid_character",
        ) from exc
    except (idna.IDNAError, UnicodeError) as exc:
        if name.isascii():
            raise _ascii_label_error(name, original) from exc
        raise ValidationError(
            f"'{original}' is not a valid internationalised host name: one of its labels breaks the rules for "
            "such names (for example a hyphen in the third and fourth places, a label that starts with an accent, "
            "or right-to-left and left-to-right letters mixed). Check each dot-separated label.",
            code="invalid_name",
        ) from exc
    return encoded.lower()


def _ascii_label_error(name: str, original: str) -> ValidationError:
    """The rule a plain ASCII name broke, in its own words (not the internationalised-name ones);
    the code stays the one clients already know."""
    for label in name.split("."):
        if label.startswith("-") or label.endswith("-"):
            return ValidationError(
                f"'{original}': the label '{label}' starts or ends with a hyphen; a label may not start or end "
                "with a hyphen.",
                code="invalid_name",
            )
        if label.startswith("xn--"):
            return ValidationError(
                f"'{original}': the label '{label}' starts with 'xn--' but is not valid punycode; "
                "enter the name as you read it, or copy its punycode exactly.",
                code="invalid_name",
            )
        if label[2:4] == "--":
            return ValidationError(
                f"'{original}': the label '{label}' has hyphens in the third and fourth places, which are kept "
                "for internationalised (xn--) names.",
                code="invalid_name",
            )
    return ValidationError(
        f"'{original}': each dot-separated label may only hold letters, digits and inner hyphens.",
        code="invalid_name",
    )


def to_unicode(ascii_host: str) -> str:
    """The Unicode form of a canonical (A-label) host, for people to read; the input if it cannot be decoded."""
    labels = []
    for label in ascii_host.split("."):
        if label.startswith("xn--"):
            try:
                label = idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                return ascii_host
        labels.append(label)
    return ".".join(labels)


# --- Look-alikes, invisible characters, names that are not egress ------------

# Scripts that legitimately share one label (UTS #39 "highly restrictive").
_SCRIPT_SETS = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_NEUTRAL_SCRIPTS = {"COMMON", "INHERITED"}


def _script_name(alias: str) -> str:
    return alias.replace("_", " ").title()


def _alias(char: str) -> str:
    # The Unicode tables load on first import (about 6 MB resident): only non-ASCII hosts need them.
    from confusable_homoglyphs import categories

    return str(categories.alias(char))


def _scripts(label: str) -> set[str]:
    return {_alias(char) for char in label} - _NEUTRAL_SCRIPTS


def _both_forms(unicode_host: str, ascii_host: str) -> str:
    return f"'{unicode_host}' (punycode {ascii_host})"


def _check_invisible(original: str) -> None:
    # IDNA mapping would drop some of these (a soft hyphen, a zero-width joiner)
    # and the user would get a name other than the one they saw.
    invisible = [(i, c) for i, c in enumerate(original) if unicodedata.category(c) in {"Cf", "Zl", "Zp"}]
    if invisible:
        where = ", ".join(f"{_describe_char(c)} at position {i + 1}" for i, c in invisible[:3])
        raise ValidationError(
            f"The host contains an invisible character: {where}. Such characters are never removed for you; "
            "retype the name by hand.",
            code="invisible_character",
        )


def _check_scripts(ascii_host: str) -> None:
    unicode_host = to_unicode(ascii_host)
    if unicode_host == ascii_host and not any(label.startswith("xn--") for label in ascii_host.split(".")):
        return
    for label in unicode_host.split("."):
        scripts = _scripts(label)
        if len(scripts) > 1 and not any(scripts <= allowed for allowed in _SCRIPT_SETS):
            names = " and ".join(sorted(_script_name(s) for s in scripts))
            raise ValidationError(
                f"{_both_forms(unicode_host, ascii_host)} mixes scripts in one label ({names} in '{label}'). "
                "Look-alike names are made this way; type the name exactly as the service publishes it.",
                code="mixed_script",
            )
        if scripts and scripts != {"LATIN"} and _looks_latin(label):
            [script] = scripts
            raise ValidationError(
                f"{_both_forms(unicode_host, ascii_host)} is written in {_script_name(script)}, but every letter "
                f"of '{label}' looks like a Latin letter, so it can pass for a different, Latin name. "
                "If this really is the service's name, ask the security team to add it.",
                code="whole_script_confusable",
            )


def _looks_latin(label: str) -> bool:
    """Whole-script confusable: every letter has an ASCII look-alike in the Unicode confusables data
    (so the label can pass for an ASCII name, which is what a spoof needs)."""
    letters = [c for c in label if _alias(c) not in _NEUTRAL_SCRIPTS]
    return bool(letters) and all(_has_ascii_lookalike(c) for c in letters)


@lru_cache(maxsize=4096)
def _has_ascii_lookalike(char: str) -> bool:
    from confusable_homoglyphs import confusables

    found = confusables.is_confusable(char, greedy=True, preferred_aliases=["latin"]) or []
    return any(
        glyph["c"].isascii() and glyph["c"].isalnum() for entry in found for glyph in entry.get("homoglyphs", [])
    )


def _under(host: str, suffix: str) -> bool:
    return host == suffix or host.endswith(f".{suffix}")


def _check_not_egress(ascii_host: str, original: str) -> None:
    for name in settings.EGRESS_REFUSED_HOSTS:
        if ascii_host == name.lower().rstrip("."):
            raise ValidationError(
                f"'{original}' is a cloud metadata or instance name, not an external service; "
                "it is never allowed as an egress destination.",
                code="metadata_name",
            )
    # The longest suffix first, so the message names the most specific one (svc.cluster.local, not local).
    for suffix in sorted(settings.EGRESS_REFUSED_SUFFIXES, key=len, reverse=True):
        if _under(ascii_host, suffix.lower().strip(".")):
            raise ValidationError(
                f"'{original}' ends in '.{suffix.strip('.')}', a name that only resolves inside a network or "
                "cluster. Egress exceptions are for external services; in-cluster traffic needs no exception.",
                code="internal_name",
            )
    for domain in settings.EGRESS_IP_ECHO_DOMAINS:
        if _under(ascii_host, domain.lower().strip(".")):
            raise ValidationError(
                f"'{original}' is under {domain}, a wildcard DNS service that answers with the address written "
                "in the name, so it would get around the ban on IP addresses. Enter the service's real DNS name.",
                code="ip_in_name",
            )
    labels = ascii_host.split(".")
    for start in range(len(labels) - 3):
        quad = labels[start : start + 4]
        if all(label.isdigit() and int(label) <= 255 for label in quad):
            raise ValidationError(
                f"'{original}' embeds the IP address {'.'.join(quad)}; egress rules are written for DNS names, "
                "not addresses. Enter the service's real DNS name.",
                code="ip_in_name",
            )


def choice_error(label: str, options: Any, value: str = "{value}") -> str:
    """The one wording for a value outside a fixed list (form, API and service fill in the value)."""
    return f"'{value}' is not a valid {label}; choose one of: {', '.join(options)}."


# One wording per rule: the form, the live preview and the API say these.
HOST_REQUIRED = "Enter a destination host name, for example api.partner.example."
PORT_REQUIRED = "Enter the port, a whole number from 1 to 65535."
PROTOCOL_REQUIRED = "Choose the protocol: tcp or udp."


def validate_destination_host(value: str) -> str:
    """Return the canonical (lower-case A-label) host or raise a ValidationError."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(HOST_REQUIRED, code="required")
    original = value.strip()
    _check_invisible(original)
    host = original.lower()
    if " " in host or "/" in host or "@" in host:
        raise ValidationError(
            f"'{original}' is not a bare host name. Enter only the name (no scheme, path, port or user), "
            "for example api.partner.example.",
            code="not_a_host",
        )
    if _looks_like_ip(host):
        raise _ip_error(original)
    if ":" in host:
        raise ValidationError(
            f"'{original}' contains ':'. Enter the port in the port field, not in the host.", code="port_in_host"
        )
    if host.endswith(".."):
        raise ValidationError(f"'{original}' has an empty label (two dots in a row).", code="empty_label")
    if host.endswith("."):
        host = host[:-1]

    wildcard = host.startswith("*.")
    rest = host[2:] if wildcard else host
    if "*" in rest or host == "*":
        raise ValidationError(
            f"'{original}': a wildcard is allowed only as one leading '*.' label above a specific domain "
            "(for example *.api.partner.example).",
            code="wildcard_position",
        )
    if not rest:
        raise ValidationError("Enter a destination host name.", code="required")
    if ".." in rest or rest.startswith("."):
        raise ValidationError(f"'{original}' has an empty label (two dots in a row).", code="empty_label")
    for label in rest.split("."):
        if len(label) > MAX_LABEL_LENGTH and label.isascii():
            raise ValidationError(
                f"'{original}': the label '{label[:20]}…' is {len(label)} characters long; "
                f"each label may have at most {MAX_LABEL_LENGTH}.",
                code="label_too_long",
            )
    if rest.isascii() and len(host) > MAX_HOST_LENGTH:
        raise ValidationError(
            f"'{original[:40]}…' is {len(host)} characters long; a DNS name may have at most {MAX_HOST_LENGTH}.",
            code="too_long",
        )
    ascii_rest = _to_ascii(rest, original)
    labels = ascii_rest.split(".")
    for label in labels:
        if len(label) > MAX_LABEL_LENGTH:
            raise ValidationError(
                f"'{original}': a label is {len(label)} characters long once encoded; "
                f"the maximum is {MAX_LABEL_LENGTH}.",
                code="label_too_long",
            )
        if not _LABEL.match(label):
            raise ValidationError(
                f"'{original}': the label '{label}' may only hold letters, digits and inner hyphens.",
                code="invalid_label",
            )
    canonical = f"*.{ascii_rest}" if wildcard else ascii_rest
    if len(canonical) > MAX_HOST_LENGTH:
        raise ValidationError(
            f"'{original}' is {len(canonical)} characters long; a DNS name may have at most {MAX_HOST_LENGTH}.",
            code="too_long",
        )
    if _NUMERIC_LABEL.match(labels[-1]):
        raise _ip_error(original)
    if ascii_rest in _LOCAL_NAMES or ascii_rest.endswith(".localhost"):
        raise ValidationError(
            f"'{original}' names this machine. Egress exceptions are for external services.", code="localhost"
        )
    _check_not_egress(ascii_rest, original)
    _check_scripts(ascii_rest)
    if wildcard and _public_suffixes().is_public(ascii_rest):
        raise ValidationError(
            f"'{original}' would allow every domain under the public suffix '{ascii_rest}'. "
            "Name the organisation's own domain, for example *.partner.example, or list exact hosts.",
            code="public_suffix_wildcard",
        )
    if len(labels) < 2:
        raise ValidationError(
            f"'{original}' is a single-label name, which resolves differently on every network. "
            "Enter the fully qualified name (for example registry.partner.example).",
            code="single_label",
        )
    return canonical


# --- Whole numbers -----------------------------------------------------------

# ASCII digits only: str.isdigit() and int() also take '²', '٤٤٣' or '1_000'.
_WHOLE_NUMBER = re.compile(r"-?[0-9]+", re.ASCII)
MAX_ID = 2**63 - 1  # a bigint primary key


@dataclass(frozen=True)
class IntBounds:
    """The whole numbers one field accepts, named for its error messages."""

    label: str
    minimum: int
    maximum: int


PORT = IntBounds("port", 1, 65535)
OBJECT_ID = IntBounds("id", 1, MAX_ID)
LIFETIME_HOURS = IntBounds("lifetime in hours", 1, 24 * 366)
# Break-glass is short-lived; the service holds it to EGRESS_BREAKGLASS_MAX_HOURS, this only bounds parsing.
BREAKGLASS_HOURS = IntBounds("duration in hours", 1, 24 * 7)
LIFETIME_DAYS = IntBounds("lifetime in days", 1, 366)
PAGE_LIMIT = IntBounds("limit", 1, 200)
PAGE_OFFSET = IntBounds("offset", 0, 10**9)
PAGE_NUMBER = IntBounds("page", 1, 10**7)


def parse_bounded_int(value: object, bounds: IntBounds) -> int:
    """The one parser for every number from a query string, a form or a JSON body.

    Accepts a JSON integer or a string of ASCII digits (an optional leading
    minus), within ``bounds``; anything else raises a ValidationError that names
    the field and its range.
    """
    expected = f"enter a whole number from {bounds.minimum} to {bounds.maximum}"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValidationError(
            f"The {bounds.label} must be a whole number; {expected}.", code="invalid_number", params={"value": value}
        )
    text = value.strip() if isinstance(value, str) else str(value)
    if not _WHOLE_NUMBER.fullmatch(text):
        shown = text if len(text) <= 20 else f"{text[:20]}…"
        raise ValidationError(
            f"'{shown}' is not a valid {bounds.label}; {expected}, in the digits 0-9.", code="invalid_number"
        )
    digits = text.lstrip("-").lstrip("0")
    # Compare lengths first: int() of a 100,000-digit string is slow by design.
    if len(digits) > len(str(max(abs(bounds.minimum), abs(bounds.maximum)))) or not (
        bounds.minimum <= int(text) <= bounds.maximum
    ):
        direction = "small" if text.startswith("-") or int(text[:40]) < bounds.minimum else "large"
        raise ValidationError(f"The {bounds.label} is too {direction}; {expected}.", code="out_of_range")
    return int(text)


def validate_port(value: object) -> int:
    return parse_bounded_int(value, PORT)


def validate_protocol(value: object) -> str:
    protocol = str(value or "").strip().lower()
    if protocol not in {"tcp", "udp"}:
        raise ValidationError(choice_error("protocol", ["tcp", "udp"], str(value)), code="invalid_protocol")
    return protocol


# --- Workload identities ----------------------------------------------------

_DNS_LABEL_K8S = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_K8S_SA = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")
_SPIFFE_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_AWS_ROLE = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):role/((?:[\w+=,.@-]+/)*)([\w+=,.@-]{1,64})$")
_GCP_SA = re.compile(r"^([a-z][a-z0-9-]{4,28}[a-z0-9])@([a-z][a-z0-9-]{4,28}[a-z0-9])\.iam\.gserviceaccount\.com$")


@dataclass(frozen=True)
class Identity:
    kind: str  # an IdentityKind value
    canonical: str
    namespace: str = ""
    service_account: str = ""


def _spiffe(value: str) -> Identity:
    rest = value[len("spiffe://") :]
    trust_domain, _, path = rest.partition("/")
    trust_domain = trust_domain.lower()
    if not trust_domain or not _TRUST_DOMAIN.match(trust_domain):
        raise ValidationError(
            f"'{value}': the trust domain must be lower-case letters, digits, dots, hyphens or underscores.",
            code="invalid_identity",
        )
    segments = path.split("/") if path else []
    if not segments or any(not _SPIFFE_PATH_SEGMENT.match(s) or s in {".", ".."} for s in segments):
        raise ValidationError(
            f"'{value}': a SPIFFE ID needs a path of non-empty segments, for example spiffe://example.org/ns/team/sa/api.",
            code="invalid_identity",
        )
    namespace = service_account = ""
    if len(segments) == 4 and segments[0] == "ns" and segments[2] == "sa":
        namespace, service_account = segments[1], segments[3]
    return Identity("spiffe", f"spiffe://{trust_domain}/{'/'.join(segments)}", namespace, service_account)


def validate_identity(value: str, *, trust_domain: str = "cluster.local") -> Identity:
    """Accept a SPIFFE ID, ``namespace/serviceaccount``, an AWS role ARN or a GCP SA e-mail."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("Enter the workload identity.", code="required")
    raw = value.strip()
    if raw.lower().startswith("spiffe://"):
        return _spiffe("spiffe://" + raw[len("spiffe://") :])
    if raw.startswith("arn:"):
        match = _AWS_ROLE.match(raw)
        if not match:
            raise ValidationError(
                f"'{raw}' is not an IAM role ARN; expected arn:aws:iam::123456789012:role/NAME.",
                code="invalid_identity",
            )
        return Identity("aws_role", raw)
    if "@" in raw:
        lowered = raw.lower()
        if not _GCP_SA.match(lowered):
            raise ValidationError(
                f"'{raw}' is not a GCP service account; expected NAME@PROJECT.iam.gserviceaccount.com.",
                code="invalid_identity",
            )
        return Identity("gcp_sa", lowered)
    if raw.count("/") == 1:
        namespace, service_account = (part.lower() for part in raw.split("/"))
        if not _DNS_LABEL_K8S.match(namespace) or not _K8S_SA.match(service_account):
            raise ValidationError(
                f"'{raw}': a Kubernetes identity is namespace/serviceaccount in lower-case DNS labels.",
                code="invalid_identity",
            )
        td = trust_domain.lower()
        return Identity("kubernetes", f"spiffe://{td}/ns/{namespace}/sa/{service_account}", namespace, service_account)
    raise ValidationError(
        f"'{raw}' is not a recognised identity. Use a SPIFFE ID (spiffe://trust-domain/ns/NS/sa/SA), "
        "a Kubernetes namespace/serviceaccount, an AWS IAM role ARN or a GCP service-account e-mail. "
        "IP addresses are never identities.",
        code="invalid_identity",
    )


def narrowing_errors(
    *,
    requested_lifetime: timedelta,
    destination_ids: Collection[int],
    lifetime: timedelta | None,
    keep_ids: Collection[int] | None,
) -> dict[str, list[str]]:
    """What is wrong with an approver's narrowing, by field (``lifetime``, ``destinations``); empty when fine.

    Narrowing only narrows: a shorter (or equal) lifetime, a non-empty subset of
    the destinations. ``None`` leaves that part as requested. The approval form
    and the service ask this one function, so both refuse with the same words.
    """
    errors: dict[str, list[str]] = {}
    if lifetime is not None:
        if lifetime <= timedelta(0):
            errors["lifetime"] = ["A narrowed lifetime must still be positive."]
        elif lifetime > requested_lifetime:
            errors["lifetime"] = [
                f"Narrowing cannot lengthen the lifetime ({format_duration(requested_lifetime)} requested); "
                "enter at most that, or request changes instead."
            ]
    keep = set(destination_ids) if keep_ids is None else set(keep_ids)
    unknown = keep - set(destination_ids)
    if unknown:
        errors["destinations"] = [
            f"Destination id(s) {', '.join(map(str, sorted(unknown)))} are not part of this request; "
            "narrowing can only drop destinations, never add them."
        ]
    elif not keep:
        errors["destinations"] = ["Keep at least one destination, or reject the request instead."]
    return errors
