"""The approval preview names a provider service, never its numbers (issue 11 §6).

The bundle carries a provider service's current CIDRs, but approval is for the
service: the preview (page and API) names it with the count of its current ranges
and the range file's sync token and date, and shows no CIDR. Name destinations
keep the exact diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from approvals.services import approve_request
from audit.services import SYSTEM
from exceptions.approval_preview import ServiceRanges, preview_approval
from exceptions.services.provider_ranges import sync_provider_ranges
from exceptions.services.publications import current_bundle

pytestmark = pytest.mark.django_db
FILES = Path(__file__).parent.parent / "bundle" / "provider_files"
S3_CIDRS = ("3.5.64.0/21", "52.218.0.0/17", "2a05:d07a:a000::/40")
RANGES = "teams/payments/cilium/payments/egress-checkout-api-ranges.yaml"
NAMES = "teams/payments/cilium/payments/egress-checkout-api.yaml"
NAMED = "# 3 current ranges of aws:S3/eu-west-1 (aws range file 1732800000 of 2026-11-28-10-00-00)"


@pytest.fixture
def request_with_both(submit: Any) -> Any:
    sync_provider_ranges(actor=SYSTEM, provider="aws", source=str(FILES / "ip-ranges.json"))
    return submit(
        destinations=[{"host": "aws:S3/eu-west-1", "port": 443}, {"host": "api.partner.example", "port": 443}]
    )


def _text(preview: Any) -> str:
    return "".join(d.diff for d in [*preview.on_approval, *preview.at_go_live])


def _added(diff: str) -> list[str]:
    return [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]


def test_the_preview_names_the_service_with_its_range_count_and_file_and_shows_no_cidr(request_with_both: Any) -> None:
    preview = preview_approval(request_with_both)
    assert preview.services == [
        ServiceRanges(
            service="aws:S3/eu-west-1",
            provider="aws",
            name="S3",
            scope="eu-west-1",
            ranges=3,
            sync_token="1732800000",
            published="2026-11-28-10-00-00",
        )
    ]
    text = _text(preview)
    assert not [cidr for cidr in S3_CIDRS if cidr in text]
    assert "52.216.0.0/15" not in text  # S3 in another region: never part of this grant
    diffs = {d.path: d.diff for d in preview.on_approval}
    assert NAMED in diffs[RANGES]
    data = next(diff for path, diff in diffs.items() if path.startswith("opa/egress/grants/"))
    assert '"cidrs": "aws:S3/eu-west-1: 3 current ranges (aws range file 1732800000 of 2026-11-28-10-00-00)"' in data


def test_what_approval_publishes_is_the_preview_with_each_range_list_named(
    request_with_both: Any, approver: Any
) -> None:
    """Exact for the name destination; for the service, exact but for the CIDR lines the named line stands for."""
    diffs = {d.path: d.diff for d in preview_approval(request_with_both).on_approval}
    approve_request(actor=approver, request=request_with_both)
    files = current_bundle().files
    assert _added(diffs[NAMES]) == files[NAMES].decode().splitlines()
    published = files[RANGES].decode().splitlines()
    cidr_lines = [line for line in published if line.strip().startswith("- cidr:")]
    assert sorted(line.split('"')[1] for line in cidr_lines) == sorted(S3_CIDRS)
    first = published.index(cidr_lines[0])
    named = [*published[:first], "    " + NAMED, *published[first + len(cidr_lines) :]]
    assert _added(diffs[RANGES]) == named


def test_a_new_range_file_changes_the_count_and_the_token_not_the_request(
    request_with_both: Any, tmp_path: Path
) -> None:
    document = json.loads((FILES / "ip-ranges.json").read_text())
    document["syncToken"], document["createDate"] = "1732900000", "2026-11-29-10-00-00"
    document["prefixes"].append({"ip_prefix": "3.5.72.0/23", "region": "eu-west-1", "service": "S3"})
    newer = tmp_path / "ip-ranges.json"
    newer.write_text(json.dumps(document))
    sync_provider_ranges(actor=SYSTEM, provider="aws", source=str(newer))
    preview = preview_approval(request_with_both)
    [service] = preview.services
    assert (service.ranges, service.sync_token, service.published) == (4, "1732900000", "2026-11-29-10-00-00")
    text = _text(preview)
    assert "3.5.72.0/23" not in text
    assert "# 4 current ranges of aws:S3/eu-west-1 (aws range file 1732900000 of 2026-11-29-10-00-00)" in text


def test_the_request_page_shows_the_named_service_and_no_cidr(
    request_with_both: Any, client: Client, approver: Any
) -> None:
    client.force_login(approver)
    page = client.get(request_with_both.get_absolute_url()).content.decode()
    assert 'id="preview-services"' in page
    section = page[page.index('id="preview-services"') : page.index("</section>", page.index('id="preview-services"'))]
    assert "<code>aws:S3/eu-west-1</code></td><td>aws</td><td>S3</td><td>eu-west-1</td><td>3</td>" in section
    assert "sync token <code>1732800000</code>, 2026-11-28-10-00-00" in section
    assert "# 3 current ranges of aws:S3/eu-west-1" in page
    assert not [cidr for cidr in S3_CIDRS if cidr in page]
    assert "api.partner.example" in page


def test_the_api_preview_names_the_service_and_carries_no_cidr(request_with_both: Any, approver: Any) -> None:
    api = APIClient()
    api.force_authenticate(approver)
    response = api.get(f"/api/v1/requests/{request_with_both.pk}/preview/")
    assert response.status_code == 200, response.content
    body = response.content.decode()
    assert not [cidr for cidr in S3_CIDRS if cidr in body]
    diffs = {entry["path"]: entry["diff"] for entry in response.json()}
    assert NAMED in diffs[RANGES]
    assert '+    - matchName: "api.partner.example"' in diffs[NAMES]


def test_a_request_for_names_only_names_no_service(submit: Any) -> None:
    preview = preview_approval(submit(destinations=[{"host": "api.partner.example", "port": 443}]))
    assert preview.services == []
    assert "current range" not in _text(preview)
