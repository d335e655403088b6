"""The whole operator story in a real browser, against the simulated gateway:
a leaked lock is flagged, the operator clears and requeues it with a reason,
the message that waited behind it is answered, and the audit page shows who
did what and why."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, expect

from simgateway.server import SimGateway
from tests.browser.conftest import PASSWORD, Server, live

pytestmark = pytest.mark.slow

KEY = "agent:main:telegram:direct:story"
SHOWN_MS = 20_000  # upper bounds only
REASON = "user reported no reply for 10 minutes"


async def operator_page(browser: Browser, server: Server) -> Page:
    page = await browser.new_page()
    await page.goto(f"{server.url}/login/?next=/")
    await page.fill("input[name=username]", "operator")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{server.url}/")
    return page


def answered(gateway: SimGateway, text: str) -> bool:
    session = gateway.registry.session(KEY)
    history = session.history if session is not None else []
    asked = [n for n, m in enumerate(history) if text in str(m.get("content", m))]
    return bool(asked) and any(m.get("role") == "assistant" for m in history[asked[0] + 1 :])


async def test_an_operator_clears_a_leaked_lock_and_the_waiting_message_is_answered(
    browser: Browser, server: Server, gateway: SimGateway
) -> None:
    gateway.send_inbound(KEY, "hello")
    gateway.send_inbound(KEY, "WEDGE this turn")
    page = await operator_page(browser, server)
    row = page.locator("tr[id^=session-]", has_text=KEY)
    for _ in range(100):
        if await row.locator("time[datetime]").count():
            break
        await page.wait_for_timeout(200)
        await page.reload()
    await live(page)
    # Running, not still queued: an abort of a queued turn just ends it, no leak.
    await expect(row.locator(".badge.running")).to_be_visible(timeout=SHOWN_MS)
    gateway.abort(KEY)  # 2026.5.28: the wedged run ends but its lock stays
    gateway.send_inbound(KEY, "are you there?")  # waits behind the leaked lock, forever

    flag = row.locator(".flag", has_text="terminal_but_held")
    await expect(flag).to_be_visible(timeout=SHOWN_MS)
    await page.mouse.move(0, 0)  # rows wait while the pointer is over the table
    apply = page.locator("#live-apply")
    if await apply.is_visible():
        await apply.click()

    await row.locator("a.act", has_text="Clear").click()
    dialog = page.locator("dialog#action-dialog")
    await expect(dialog).to_be_visible(timeout=SHOWN_MS)
    await expect(dialog).to_contain_text("runboard.registry.forceClear")
    await expect(dialog).to_contain_text("admits it itself once the lock clears")
    confirm = dialog.locator("button[type=submit]", has_text="Clear and requeue")
    await confirm.click()  # no reason yet: the browser asks for one, nothing is sent
    await expect(dialog.locator("textarea[name=reason]")).to_be_focused()
    await dialog.locator("textarea[name=reason]").fill(REASON)
    await confirm.click()

    await expect(dialog.locator(".badge.result-success")).to_be_visible(timeout=SHOWN_MS)
    await expect(dialog).to_contain_text("cleared")
    await dialog.locator("[data-close-dialog]", has_text="Close").click()
    await expect(dialog).to_be_hidden()
    await expect(flag).to_have_count(0, timeout=SHOWN_MS)
    for _ in range(100):
        if answered(gateway, "are you there?"):
            break
        await page.wait_for_timeout(200)
    assert answered(gateway, "are you there?")

    await page.goto(f"{server.url}/audit/")
    entry = page.locator("tr", has_text=REASON)
    await expect(entry).to_be_visible()
    await expect(entry).to_contain_text("operator")
    await expect(entry).to_contain_text(re.compile("success"))
    await expect(entry).to_contain_text(KEY)
