"""Hosts as people read them: an internationalised name in Unicode and in punycode.

``{% load hosts %}`` then ``{{ grant.host|host_unicode }}`` for the Unicode form
alone, or ``{% show_host grant.host %}`` wherever a host is displayed: the
Unicode form with the punycode beside it for an IDN, the plain name otherwise.
The approval queue, the request and grant pages, explain and the bundle diff use
the same tag, so a look-alike can never be shown in only one form.
"""

from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from bundle.provider_ranges import is_service_destination
from exceptions.validators import to_unicode

register = template.Library()


@register.filter
def host_unicode(host: str) -> str:
    return to_unicode(host or "")


@register.simple_tag
def show_host(host: str, port: object = None, protocol: str = "") -> SafeString:
    host = host or ""
    suffix = f":{port}" if port not in (None, "") else ""
    suffix += f"/{protocol}" if protocol else ""
    if is_service_destination(host):
        # Approved as the named service; its addresses change with the provider's file.
        return format_html('<code class="host service">{}{}</code> <small>(provider service)</small>', host, suffix)
    readable = to_unicode(host)
    if readable == host:
        return format_html('<code class="host">{}{}</code>', host, suffix)
    return format_html(
        '<code class="host" lang="und">{}{}</code> <small class="punycode">(punycode <code>{}</code>)</small>',
        readable,
        suffix,
        host,
    )
