"""The live console in a real browser: pushes, ticking ages, flags, filters, detail, reconnects."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from simgateway.server import SimGateway
from tests.browser.conftest import Server, live, logged_in_page

pytestmark = pytest.mark.slow

KEY = "agent:main:telegram:direct:browser"
OTHER = "agent:support:slack:direct:quiet"
# Upper bounds for what the page must show; a healthy run takes well under a second.
SHOWN_MS = 20_000


async def session_listed(browser: Browser, server: Server, gateway: SimGateway, key: str) -> Page:
    """Let a quick turn create the session, then open the sessions page showing its row."""
    gateway.send_inbound(key, "hello")
    page = await logged_in_page(browser, server)
    row = row_of_key(page, key)
    for _ in range(100):
        if await row.count():
            break
        await page.wait_for_timeout(200)
        await page.reload()
    await expect(row).to_be_visible()
    await live(page)
    return page


def row_of_key(page: Page, key: str) -> Locator:
    return page.locator("tr[id^=session-]", has_text=key)


async def test_a_lock_appears_and_its_age_ticks_without_a_reload(
    browser: Browser, server: Server, gateway: SimGateway
) -> None:
    page = await session_listed(browser, server, gateway, KEY)
    await page.evaluate("window.notReloaded = true")
    row = row_of_key(page, KEY)
    await expect(row.locator("time")).to_have_count(0)

    gateway.send_inbound(KEY, "please HANG")

    age = row.locator("time[datetime]")
    await expect(age).to_be_visible(timeout=SHOWN_MS)
    await expect(row).to_contain_text("running")
    first = await age.text_content()
    await expect(age).not_to_have_text(first or "", timeout=SHOWN_MS)
    assert await page.evaluate("window.notReloaded") is True


async def test_a_flag_appears_when_the_gateway_leaks_a_lock(
    browser: Browser, server: Server, gateway: SimGateway
) -> None:
    page = await session_listed(browser, server, gateway, KEY)
    await page.evaluate("window.notReloaded = true")
    row = row_of_key(page, KEY)

    gateway.send_inbound(KEY, "WEDGE x")
    await expect(row.locator("time[datetime]")).to_be_visible(timeout=SHOWN_MS)
    await expect(row.locator(".badge.running")).to_be_visible(timeout=SHOWN_MS)
    gateway.abort(KEY)  # a wedged backend ignores it: 2026.5.28 keeps the lock

    flag = row.locator(".flag", has_text="terminal_but_held")
    await expect(flag).to_be_visible(timeout=SHOWN_MS)
    assert await flag.get_attribute("title")  # the why, on hover and focus
    await expect(page.locator("#stuck-count")).not_to_have_text("0", timeout=SHOWN_MS)
    assert await page.evaluate("window.notReloaded") is True


async def test_a_new_session_waits_behind_the_changes_notice_until_applied(
    browser: Browser, server: Server, gateway: SimGateway
) -> None:
    page = await session_listed(browser, server, gateway, KEY)

    gateway.send_inbound(OTHER, "HANG new")

    notice = page.locator("#live-apply")
    await expect(notice).to_be_visible(timeout=SHOWN_MS)
    await expect(notice).to_contain_text("apply")
    await expect(row_of_key(page, OTHER)).to_have_count(0)
    await notice.click()
    await expect(row_of_key(page, OTHER)).to_be_visible(timeout=SHOWN_MS)
    await expect(notice).to_be_hidden()


async def test_changes_wait_while_the_pointer_is_over_the_table(
    browser: Browser, server: Server, gateway: SimGateway
) -> None:
    page = await session_listed(browser, server, gateway, KEY)
    row = row_of_key(page, KEY)
    await row.hover()

    gateway.send_inbound(KEY, "HANG under the pointer")

    notice = page.locator("#live-apply")
    await expect(notice).to_have_text("1 change \u2014 apply", timeout=SHOWN_MS)
    await expect(row.locator("time[datetime]")).to_have_count(0)
    await notice.click()
    await expect(row.locator("time[datetime]")).to_be_visible(timeout=SHOWN_MS)


async def test_url_filters_show_only_the_matching_rows(
    browser: Browser, server: Server, gateway: SimGateway
) -> None:
    page = await session_listed(browser, server, gateway, OTHER)
    gateway.send_inbound(KEY, "WEDGE x")
    notice = page.locator("#live-apply")
    await expect(notice).to_be_visible(timeout=SHOWN_MS)
    await notice.click()
    # The wedged turn must be running first: an abort while it is queued just ends it.
    await expect(row_of_key(page, KEY).locator(".badge.running")).to_be_visible(timeout=SHOWN_MS)
    gateway.abort(KEY)
    flagged = f"{server.url}/?gateway=sim-eu&flagged=1"
    for _ in range(100):
        await page.goto(flagged)
        if await row_of_key(page, KEY).count():
            break
        await page.wait_for_timeout(200)

    await expect(row_of_key(page, KEY)).to_be_visible()
    await expect(row_of_key(page, OTHER)).to_have_count(0)
    await page.goto(f"{server.url}/?gateway=elsewhere")
    await expect(page.locator("tr[id^=session-]")).to_have_count(0)
    await page.goto(f"{server.url}/?q=slack")
    await expect(row_of_key(page, OTHER)).to_be_visible()
    await expect(row_of_key(page, KEY)).to_have_count(0)


async def test_the_session_detail_shows_one_timeline_with_relative_and_absolute_times(
    browser: Browser, server: Server, gateway: SimGateway
) -> None:
    page = await session_listed(browser, server, gateway, KEY)
    gateway.send_inbound(KEY, "WEDGE x")
    await expect(row_of_key(page, KEY).locator(".badge.running")).to_be_visible(timeout=SHOWN_MS)
    gateway.abort(KEY)
    await expect(row_of_key(page, KEY).locator(".flag")).not_to_have_count(0, timeout=SHOWN_MS)

    await row_of_key(page, KEY).locator("a", has_text=KEY).click()
    await page.wait_for_url("**/sessions/*/")

    entries = page.locator("ol.timeline li")
    assert await entries.count() >= 4  # two runs: acquired, ended, released, acquired, ended
    first = entries.first
    await expect(first.locator("time[datetime]")).to_be_visible()
    await expect(first.locator(".abs")).to_have_text(re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"))


async def test_the_page_says_it_is_not_live_while_the_server_is_down_and_recovers(
    browser: Browser, server: Server, gateway: SimGateway
) -> None:
    page = await session_listed(browser, server, gateway, KEY)
    banner = page.locator("#live-status")
    await expect(banner).to_be_hidden()

    await server.stop()
    await expect(banner).to_be_visible(timeout=SHOWN_MS)
    await expect(banner).to_contain_text("Not live")

    await server.start()
    await expect(banner).to_be_hidden(timeout=60_000)
    await expect(row_of_key(page, KEY)).to_be_visible()  # the reconnect's re-fetch kept it
    gateway.send_inbound(KEY, "HANG after the restart")
    await expect(row_of_key(page, KEY).locator("time[datetime]")).to_be_visible(timeout=SHOWN_MS)


async def test_changes_wait_while_a_dialog_is_open(
    browser: Browser, server: Server, gateway: SimGateway
) -> None:
    page = await session_listed(browser, server, gateway, KEY)
    await page.keyboard.press("?")
    await expect(page.locator("dialog#keys-help")).to_be_visible()

    gateway.send_inbound(KEY, "HANG behind the dialog")

    notice = page.locator("#live-apply")
    await expect(notice).to_have_text("1 change \u2014 apply", timeout=SHOWN_MS)
    await expect(row_of_key(page, KEY).locator("time[datetime]")).to_have_count(0)


async def test_a_hidden_tab_ignores_pushes_and_catches_up_when_shown(
    browser: Browser, server: Server, gateway: SimGateway
) -> None:
    page = await session_listed(browser, server, gateway, KEY)
    await page.evaluate(COUNT_PUSHES)
    await page.evaluate(SET_HIDDEN, True)

    gateway.send_inbound(KEY, "HANG while hidden")
    gateway.send_inbound(OTHER, "HANG while hidden")
    await page.wait_for_function(PUSHED, arg=[KEY, OTHER], timeout=SHOWN_MS)
    await expect(row_of_key(page, KEY).locator("time[datetime]")).to_have_count(0)

    await page.evaluate(SET_HIDDEN, False)
    await expect(row_of_key(page, KEY).locator("time[datetime]")).to_be_visible(timeout=SHOWN_MS)
    await expect(row_of_key(page, OTHER)).to_be_visible(timeout=SHOWN_MS)


async def test_the_detail_page_shows_no_changes_notice_for_rows_it_does_not_list(
    browser: Browser, server: Server, gateway: SimGateway
) -> None:
    page = await session_listed(browser, server, gateway, KEY)
    await row_of_key(page, KEY).locator("a", has_text=KEY).click()
    await page.wait_for_url("**/sessions/*/")
    await live(page)
    await page.evaluate(COUNT_PUSHES)

    gateway.send_inbound(OTHER, "HANG elsewhere")
    await page.wait_for_function(PUSHED, arg=[OTHER], timeout=SHOWN_MS)
    await expect(page.locator("#live-apply")).to_be_hidden()


COUNT_PUSHES = """() => {
  window.pushed = "";
  document.getElementById("live").addEventListener("htmx:wsBeforeMessage", (e) => {
    window.pushed += e.detail.message;
  });
}"""
PUSHED = "(keys) => keys.every((key) => window.pushed.includes(key))"
# The page cannot be hidden headless; this flips what live.js reads and tells it.
SET_HIDDEN = """(hidden) => {
  Object.defineProperty(document, "hidden", {value: hidden, configurable: true});
  document.dispatchEvent(new Event("visibilitychange"));
}"""
