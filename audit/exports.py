"""Audit exports (JSON lines and CSV) that stream with flat memory and carry their checkpoint.

Both formats start with a header: the filters, the sequence number the export
runs through (the head when it started) and the last signed checkpoint at or
before it. ``manage.py verify_audit --export FILE`` re-walks the chain and
checks the checkpoint's signature and hash, with nothing but the file and the
portal's public key. The query parameters are the audit log page's:
``actor``, ``action``, ``object_type``, ``team``, ``ticket``, ``since`` and
``until`` (dates or ISO times; ``until`` as a date includes that whole day).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.utils.dateparse import parse_date, parse_datetime

from audit.checkpoints import as_checkpoint
from audit.hooks import may_read as can_view_audit
from audit.selectors import checkpoint_at_or_before, export_rows, head_seq
from audit.verification import CSV_HEADER_MARKER, EXPORT_TYPE, RECORD_FIELDS, csv_cell, record_from_row

CSV_COLUMNS = RECORD_FIELDS
# The first CSV row after the column names is marked CSV_HEADER_MARKER; its ``after`` cell holds the header.


class FilterError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class ExportFilters:
    actor: str = ""
    action: str = ""
    object_type: str = ""
    since: datetime | None = None
    until: datetime | None = None
    team: str = ""
    ticket: str = ""

    def described(self) -> dict[str, str]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items() if v}


def _moment(field: str, raw: str, *, end_of_day: bool) -> datetime | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        moment = parse_datetime(raw)
        day = None if moment else parse_date(raw)
    except ValueError:
        moment, day = None, None
    if moment is None and day is None:
        raise FilterError(field, f"{raw!r} is not a date (YYYY-MM-DD) or an ISO time (YYYY-MM-DDTHH:MM:SSZ).")
    if moment is None:
        assert isinstance(day, date)
        start = datetime.combine(day, time.min, tzinfo=UTC)
        # "until 2026-03-31" means through the end of that day.
        return start + timedelta(days=1) if end_of_day else start
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_filters(query: QueryDict) -> ExportFilters:
    filters = ExportFilters(
        actor=query.get("actor", "").strip(),
        action=query.get("action", "").strip(),
        object_type=query.get("object_type", "").strip(),
        since=_moment("since", query.get("since", ""), end_of_day=False),
        until=_moment("until", query.get("until", ""), end_of_day=True),
        team=query.get("team", "").strip(),
        ticket=query.get("ticket", "").strip(),
    )
    if filters.since and filters.until and filters.since >= filters.until:
        raise FilterError("until", "must be later than since.")
    return filters


def export_header(filters: ExportFilters) -> dict[str, Any]:
    through = head_seq()
    checkpoint = checkpoint_at_or_before(through)
    return {
        "type": EXPORT_TYPE,
        "through_seq": through,
        "filters": filters.described(),
        "checkpoint": as_checkpoint(checkpoint).document() if checkpoint else None,
    }


def export_records(filters: ExportFilters, through_seq: int) -> Iterator[dict[str, Any]]:
    for row in export_rows(
        through_seq=through_seq,
        actor=filters.actor,
        action=filters.action,
        object_type=filters.object_type,
        since=filters.since,
        until=filters.until,
        team=filters.team,
        ticket=filters.ticket,
    ):
        yield record_from_row(row)


def jsonl_lines(filters: ExportFilters) -> Iterator[str]:
    header = export_header(filters)
    yield json.dumps(header, sort_keys=True) + "\n"
    for record in export_records(filters, header["through_seq"]):
        yield json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"


def csv_lines(filters: ExportFilters) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    header = export_header(filters)
    writer.writerow(CSV_COLUMNS)
    marker = dict.fromkeys(CSV_COLUMNS, "")
    marker.update(seq=CSV_HEADER_MARKER, after=json.dumps(header, sort_keys=True))
    writer.writerow(marker.values())
    yield flush()
    for count, record in enumerate(export_records(filters, header["through_seq"]), start=1):
        record["before"] = json.dumps(record["before"], sort_keys=True, ensure_ascii=False)
        record["after"] = json.dumps(record["after"], sort_keys=True, ensure_ascii=False)
        record["context"] = json.dumps(record["context"], sort_keys=True) if record["context"] else ""
        writer.writerow([csv_cell(value) if isinstance(value, str) else value for value in record.values()])
        # Lines are batched: a response chunk per row costs more than the row.
        if count % 500 == 0:
            yield flush()
    yield flush()


def _stream(
    request: HttpRequest, render: Any, content_type: str, extension: str
) -> HttpResponse | StreamingHttpResponse:
    if not can_view_audit(request.user):
        raise Http404("No such page.")
    try:
        filters = parse_filters(request.GET)
    except FilterError as exc:
        return HttpResponse(f"Bad filter {exc}\n", status=400, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(render(filters), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="egress-portal-audit.{extension}"'
    return response


@login_required
def export_jsonl(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The chain (or the filtered part of it) as JSON lines, header first."""
    return _stream(request, jsonl_lines, "application/x-ndjson", "jsonl")


@login_required
def export_csv(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The same as CSV for spreadsheets; ``before``/``after`` cells hold canonical JSON."""
    return _stream(request, csv_lines, "text/csv; charset=utf-8", "csv")
