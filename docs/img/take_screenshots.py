"""Take the README's tour screenshots again, from the seeded demo.

    env -u DATABASE_URL .venv/bin/python manage.py migrate
    env -u DATABASE_URL .venv/bin/python manage.py seed_demo
    env -u DATABASE_URL .venv/bin/python manage.py runserver 127.0.0.1:8765 --noreload &
    .venv/bin/python docs/img/take_screenshots.py [http://127.0.0.1:8765]

Headless Chromium at 1280 px, signed in as the demo users (TOTP codes computed
from var/demo-logins.json). Writes docs/img/*.png; look at them before committing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
WIDTH = 1280


def totp(secret: str, at: float) -> str:
    """RFC 6238 with allauth's defaults: SHA-1, 30-second steps, 6 digits."""
    digest = hmac.new(base64.b32decode(secret), struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    offset = digest[-1] & 15
    code = (struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def log_in(page: Any, base: str, logins: dict[str, Any], user: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", user)
    page.fill("input[name=password]", logins[user])
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login" not in url)
    if "/2fa/authenticate" in page.url:
        page.fill("input[name=code]", totp(logins["totp"][user], time.time()))
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/2fa/authenticate" not in url)


def save(page: Any, name: str, height: int | None = None) -> None:
    height = height or int(page.evaluate("document.body.scrollHeight"))
    clip = {"x": 0, "y": 0, "width": WIDTH, "height": height}
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True, clip=clip)
    print(f"{name}.png  {page.url}")


def main(base: str) -> None:
    logins = json.loads((ROOT / "var" / "demo-logins.json").read_text())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless=new", "--no-sandbox"])

        def session(user: str) -> tuple[Any, Any]:
            context = browser.new_context(viewport={"width": WIDTH, "height": 800})
            page = context.new_page()
            log_in(page, base, logins, user)
            return context, page

        context, page = session("requester")
        page.goto(f"{base}/requests/new/")
        page.select_option("select[name=workload]", label="checkout-api (prod)")
        page.select_option("select[name=data_class]", "confidential")
        justification = "checkout-api posts card settlements to the partner's API; without it payouts stop."
        page.fill("textarea[name=justification]", justification)
        page.fill("input[name=ticket_ref]", "CHG-2041")
        page.fill("input[name=dest-0-host]", "api.settlement-partner.example")
        page.locator("input[name=lifetime_value]").fill("7")
        page.locator("input[name=lifetime_value]").blur()
        page.locator("#risk-reasons li").first.wait_for(timeout=10_000)
        save(page, "request-form")
        context.close()

        context, page = session("approver")
        page.goto(f"{base}/approvals/")
        save(page, "approvals", 880)
        context.close()

        context, page = session("security")
        page.goto(f"{base}/approvals/")
        pending = page.locator("table a[href^='/requests/']").first.get_attribute("href")  # the oldest pending
        page.goto(f"{base}{pending}")
        save(page, "request-page", 900)
        question = {
            "identity": "spiffe://cluster.local/ns/payments-staging/sa/checkout-api",
            "host": "files.stripe.com",
            "port": 443,
            "protocol": "tcp",
        }
        page.goto(f"{base}/explain?{urlencode(question)}")
        save(page, "explain")
        page.goto(f"{base}/grants/")
        save(page, "grants")
        context.close()

        context, page = session("auditor")
        page.goto(f"{base}/audit/")
        save(page, "audit", 900)
        context.close()
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8765")
