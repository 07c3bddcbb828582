#!/usr/bin/env python3
"""egress-check: ask the Egress Portal whether an application's intended egress is allowed.

Reads ``egress.yaml`` (or JSON), calls ``POST /api/v1/preflight/`` with a bearer token,
prints one line per destination and exits with a code a CI job can act on. With
``--file-requests`` it files the missing destinations through ``POST /api/v1/requests/``.

Standard library only (PyYAML is used for YAML when installed; JSON always works),
so it runs in any CI image with Python 3.11+. See README.md beside this file.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_OK = 0  # every destination is allowed
EXIT_MISSING = 1  # a destination needs a request, or is invalid
EXIT_USAGE = 2  # bad arguments, egress.yaml, token, or input the portal refused
EXIT_UNREACHABLE = 3  # the portal could not be asked: connection, TLS, auth, server error
EXIT_PENDING = 4  # nothing missing, but something waits for approval

DEFAULT_FILES = ("egress.yaml", "egress.yml", "egress.json")
TOP_KEYS = {"version", "portal", "workload", "request", "endpoints"}
ENDPOINT_KEYS = {"host", "port", "protocol", "purpose", "data_class", "justification", "lifetime_hours"}
ENDPOINT_KEYS |= {"lifetime_days", "ticket"}
REQUEST_KEYS = {"purpose", "data_class", "justification", "lifetime_hours", "lifetime_days", "ticket"}
NEEDED_TO_FILE = ("purpose", "data_class", "justification", "lifetime")
LABELS = {"allowed": "allowed", "pending": "pending", "needs_request": "needs request", "invalid": "invalid"}


class Failure(Exception):
    """Stop with a message and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --- egress.yaml ------------------------------------------------------------------


def _parse(path: Path, text: str) -> Any:
    if path.suffix == ".json":
        return json.loads(text)
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        try:
            return json.loads(text)  # JSON is YAML too
        except ValueError:
            raise Failure(
                f"{path} is YAML but PyYAML is not installed: `pip install PyYAML`, or write it as egress.json.",
                EXIT_USAGE,
            ) from None
    return yaml.safe_load(text)


def load_config(path: Path) -> dict[str, Any]:
    """The file, checked: every problem is named with where it is, before anything is sent."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from exc
    try:
        data = _parse(path, text)
    except Failure:
        raise
    except Exception as exc:  # yaml.YAMLError or ValueError: the parser's message says where
        raise Failure(f"{path} is not valid YAML/JSON: {exc}", EXIT_USAGE) from exc
    problems: list[str] = []
    if not isinstance(data, dict):
        raise Failure(f"{path}: expected a mapping with 'workload' and 'endpoints'.", EXIT_USAGE)
    problems += [f"unknown key '{k}' (known: {', '.join(sorted(TOP_KEYS))})" for k in sorted(set(data) - TOP_KEYS)]
    workload = data.get("workload")
    if isinstance(workload, bool) or not isinstance(workload, int | str) or workload == "":
        problems.append("'workload' must be the workload's identity (e.g. payments/checkout-api) or its numeric id")
    defaults = data.get("request") or {}
    if not isinstance(defaults, dict):
        problems.append("'request' must be a mapping of defaults for filing (purpose, data_class, ...)")
        defaults = {}
    problems += [f"request: unknown key '{k}'" for k in sorted(set(defaults) - REQUEST_KEYS)]
    endpoints = data.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        problems.append("'endpoints' must be a non-empty list of {host, port[, protocol]}")
        endpoints = []
    for index, endpoint in enumerate(endpoints):
        where = f"endpoints[{index}]"
        if not isinstance(endpoint, dict):
            problems.append(f"{where}: expected a mapping with host and port")
            continue
        problems += [f"{where}: unknown key '{k}'" for k in sorted(set(endpoint) - ENDPOINT_KEYS)]
        if not isinstance(endpoint.get("host"), str) or not endpoint["host"].strip():
            problems.append(f"{where}.host: a DNS name is required")
        port = endpoint.get("port")
        if isinstance(port, bool) or not isinstance(port, int):
            problems.append(f"{where}.port: a whole number is required")
        if "protocol" in endpoint and str(endpoint["protocol"]).lower() not in {"tcp", "udp"}:
            problems.append(f"{where}.protocol: tcp or udp")
    if problems:
        raise Failure(f"{path} has problems:\n  " + "\n  ".join(problems), EXIT_USAGE)
    return data


def find_config(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    for name in DEFAULT_FILES:
        if Path(name).exists():
            return Path(name)
    raise Failure(f"no {' / '.join(DEFAULT_FILES)} here; name the file with -f.", EXIT_USAGE)


# --- The portal -------------------------------------------------------------------


class Portal:
    def __init__(self, url: str, token: str, timeout: float) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise Failure(f"the portal URL must be http(s)://host[:port], not {url!r}", EXIT_USAGE)
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON) for 2xx and 4xx answers; a Failure for anything else."""
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url + path,
            data=json.dumps(body).encode("utf-8"),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "egress-check/1",
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, _json(response.read(), self.url + path)
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            if exc.code in (401, 403):
                raise Failure(
                    f"the portal refused the token ({exc.code}): {_detail(payload)} "
                    "(preflight needs the 'explain' scope, filing 'requests:write')",
                    EXIT_UNREACHABLE,
                ) from exc
            if 400 <= exc.code < 500 and exc.code != 429:
                return exc.code, _json(payload, self.url + path)
            raise Failure(f"{self.url}{path} answered {exc.code}: {_detail(payload)}", EXIT_UNREACHABLE) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Failure(f"cannot reach the portal at {self.url}: {reason}", EXIT_UNREACHABLE) from exc


def _json(payload: bytes, where: str) -> Any:
    try:
        return json.loads(payload.decode("utf-8"))
    except ValueError as exc:
        raise Failure(f"{where} did not answer JSON: {payload[:200]!r}", EXIT_UNREACHABLE) from exc


def _detail(payload: bytes) -> str:
    try:
        data = json.loads(payload.decode("utf-8"))
    except ValueError:
        return payload[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        return str(data.get("detail") or data.get("title") or data)
    return str(data)


def field_errors(body: Any) -> list[str]:
    """Field errors as 'field: message' lines, from {field: [messages]} or a problem's errors list."""
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return [
            f"{e.get('field') or e.get('attr') or '-'}: {e.get('message') or e.get('detail')}" for e in body["errors"]
        ]
    if isinstance(body, dict):
        lines = []
        for name, messages in body.items():
            for message in messages if isinstance(messages, list) else [messages]:
                lines.append(f"{name}: {message}")
        return lines
    return [str(body)]


# --- Report -----------------------------------------------------------------------


def _when(value: str, now: datetime) -> str:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return value
    left = moment - now
    days, hours = left.days, left.seconds // 3600
    ahead = f"in {days} d {hours} h" if days else f"in {hours} h {left.seconds % 3600 // 60} min"
    return f"{moment:%Y-%m-%d %H:%M} UTC ({ahead})"


def describe(row: dict[str, Any], now: datetime, identity: str) -> str:
    status = row["status"]
    if status == "allowed":
        request = row.get("request") or {}
        return f"until {_when(row['until'], now)}, grant {row['grant_id']} (request {request.get('id')})"
    if status == "pending":
        request = row["request"]
        start = f", starts {_when(request['starts_at'], now)}" if request.get("starts_at") else ""
        filed = "filed now: " if row.get("filed") else ""
        return f"{filed}request {request['id']} ({request['status']}{start}) {request['url']}"
    if status == "needs_request":
        reason = row["reason"].replace(identity, "this workload")  # the header already names it
        return f"{reason}; run with --file-requests or open {row['new_request_url']}"
    return row["reason"]


def report(answer: dict[str, Any], out: Any) -> None:
    workload = answer["workload"]
    now = datetime.now(UTC)
    print(f"egress-check: {workload['name']} (team {workload['team']}, {workload['environment']})", file=out)
    print(f"  identity {workload['identity']}", file=out)
    rows = answer["results"]
    names = [f"{r['host']}:{r['port']}/{r['protocol']}" for r in rows]
    width = max(len(n) for n in [*names, "DESTINATION"])
    label = max(len(v) for v in LABELS.values())
    print(f"  {'DESTINATION':<{width}}  {'STATUS':<{label}}  DETAIL", file=out)
    for name, row in zip(names, rows, strict=True):
        print(
            f"  {name:<{width}}  {LABELS[row['status']]:<{label}}  {describe(row, now, workload['identity'])}", file=out
        )
    counts = {key: sum(r["status"] == key for r in rows) for key in LABELS}
    parts = [f"{counts[key]} {LABELS[key]}" for key in LABELS if counts[key]]
    print(f"{len(rows)} destination{'s' if len(rows) != 1 else ''}: {', '.join(parts)}", file=out)


def exit_code(rows: list[dict[str, Any]]) -> int:
    statuses = {row["status"] for row in rows}
    if statuses & {"needs_request", "invalid"}:
        return EXIT_MISSING
    if "pending" in statuses:
        return EXIT_PENDING
    return EXIT_OK


# --- Filing -----------------------------------------------------------------------


def request_fields(defaults: dict[str, Any], endpoint: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """What one endpoint's request says (its own keys over the defaults), and what it lacks."""
    merged = {**defaults, **{k: v for k, v in endpoint.items() if k in REQUEST_KEYS}}
    fields: dict[str, Any] = {
        "purpose": merged.get("purpose"),
        "data_class": merged.get("data_class"),
        "justification": merged.get("justification"),
        "ticket_ref": str(merged.get("ticket") or ""),
    }
    if merged.get("lifetime_hours") is not None:
        fields["lifetime"] = merged["lifetime_hours"]
    elif merged.get("lifetime_days") is not None:
        days = merged["lifetime_days"]
        fields["lifetime"] = days * 24 if isinstance(days, int) and not isinstance(days, bool) else days
    else:
        fields["lifetime"] = None
    missing = [name for name in NEEDED_TO_FILE if fields.get(name) in (None, "")]
    return fields, missing


def file_requests(portal: Portal, config: dict[str, Any], answer: dict[str, Any], out: Any) -> list[str]:
    """File one request per distinct set of answers; returns problems (empty when all were filed)."""
    defaults = config.get("request") or {}
    groups: dict[str, tuple[dict[str, Any], list[int]]] = {}
    lacking: list[str] = []
    for index, (endpoint, row) in enumerate(zip(config["endpoints"], answer["results"], strict=True)):
        if row["status"] != "needs_request":
            continue
        fields, missing = request_fields(defaults, endpoint)
        if missing:
            lacking.append(f"{row['host']}:{row['port']}/{row['protocol']} lacks {', '.join(missing)}")
            continue
        key = json.dumps(fields, sort_keys=True)
        groups.setdefault(key, (fields, []))[1].append(index)
    if lacking:
        raise Failure(
            "not filing: a request needs purpose, data_class, justification and lifetime_hours (or lifetime_days); "
            "set them under 'request:' in egress.yaml or on the endpoint.\n  " + "\n  ".join(lacking),
            EXIT_USAGE,
        )
    problems: list[str] = []
    for fields, indexes in groups.values():
        rows = [answer["results"][i] for i in indexes]
        body = {
            "workload": answer["workload"]["id"],
            "destinations": [d for row in rows for d in row["request_body"]["destinations"]],
            "purpose": fields["purpose"],
            "data_class": fields["data_class"],
            "justification": fields["justification"],
            "ticket_ref": fields["ticket_ref"],
            "lifetime_hours": fields["lifetime"],
        }
        # The same file filed twice (a retried CI job) is one request once the portal honours the key.
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()
        status, created = portal.post("/api/v1/requests/", body, headers={"Idempotency-Key": key})
        names = ", ".join(f"{r['host']}:{r['port']}" for r in rows)
        if status != 201:
            problems.append(f"filing {names} was refused ({status}):\n    " + "\n    ".join(field_errors(created)))
            continue
        url = f"{portal.url}/requests/{created['id']}/"
        risk = created.get("risk_tier", "?")
        print(f"filed request {created['id']} ({created['status']}, {risk} risk) for {names}: {url}", file=out)
        for row in rows:
            row.update(
                status="pending", filed=True, request={"id": created["id"], "status": created["status"], "url": url}
            )
    return problems


# --- Command line -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egress-check",
        description="Check an application's intended egress (egress.yaml) against the Egress Portal.",
        epilog=(
            "Environment: EGRESS_TOKEN (required; an integration token with the 'explain' scope, plus "
            "'requests:write' for --file-requests), EGRESS_URL (the portal). Exit codes: 0 all allowed, "
            "1 something needs a request or is invalid, 2 usage or configuration error, 3 portal unreachable "
            "or refused the token, 4 nothing missing but something awaits approval."
        ),
    )
    parser.add_argument("-f", "--file", help="egress.yaml / egress.json (default: the first found here)")
    parser.add_argument("--url", help="portal base URL (default: $EGRESS_URL, then 'portal' in the file)")
    parser.add_argument("--file-requests", action="store_true", help="file requests for the missing destinations")
    parser.add_argument("--json", action="store_true", help="print the portal's answer as JSON instead")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP call (default 30)")
    return parser


def run(argv: list[str] | None, out: Any, err: Any) -> int:
    args = build_parser().parse_args(argv)
    path = find_config(args.file)
    config = load_config(path)
    url = args.url or os.environ.get("EGRESS_URL") or config.get("portal")
    if not url:
        raise Failure("no portal URL: pass --url, set EGRESS_URL or add 'portal:' to the file.", EXIT_USAGE)
    token = os.environ.get("EGRESS_TOKEN", "").strip()
    if not token:
        raise Failure("EGRESS_TOKEN is not set: create a token with the 'explain' scope and export it.", EXIT_USAGE)
    portal = Portal(str(url), token, args.timeout)
    workload = config["workload"]
    destinations = [
        {"host": e["host"].strip(), "port": e["port"], "protocol": str(e.get("protocol", "tcp")).lower()}
        for e in config["endpoints"]
    ]
    body = {"workload" if isinstance(workload, int) else "identity": workload, "destinations": destinations}
    status, answer = portal.post("/api/v1/preflight/", body)
    if status != 200:
        raise Failure(f"the portal refused {path} ({status}):\n  " + "\n  ".join(field_errors(answer)), EXIT_USAGE)
    problems: list[str] = []
    if args.file_requests and any(r["status"] == "needs_request" for r in answer["results"]):
        problems = file_requests(portal, config, answer, err if args.json else out)
    if args.json:
        json.dump(answer, out, indent=2)
        out.write("\n")
    else:
        report(answer, out)
    for problem in problems:
        print(f"egress-check: {problem}", file=err)
    return exit_code(answer["results"])


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv, sys.stdout, sys.stderr)
    except Failure as failure:
        print(f"egress-check: {failure}", file=sys.stderr)
        return failure.code


if __name__ == "__main__":
    sys.exit(main())
