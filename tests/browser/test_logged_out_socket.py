"""Under the real server (daphne): the live socket works under the Content-Security-Policy,
and a logout in another tab closes it with a message and a link to log in again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from simgateway.server import SimGateway
from tests.browser.conftest import PASSWORD, Server, live

pytestmark = pytest.mark.slow

SHOWN_MS = 20_000  # an upper bound; the check runs every 0.2 s here

LISTEN = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture
async def quick_check_server(server_var: Path, gateway: SimGateway) -> AsyncIterator[Server]:
    running = Server(server_var, gateway.url, RUNBOARD_LIVE_SESSION_CHECK_S="0.2")
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
        print(running.output())


async def test_a_logout_in_another_tab_closes_the_socket_and_the_page_says_so(
    browser: Browser, quick_check_server: Server
) -> None:
    context = await browser.new_context()
    await context.add_init_script(LISTEN)
    page = await context.new_page()
    await page.goto(f"{quick_check_server.url}/login/?next=/")
    await page.fill("input[name=username]", "viewer")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{quick_check_server.url}/")
    await live(page)
    assert await page.evaluate("window.__cspViolations") == []

    other = await context.new_page()
    await other.goto(quick_check_server.url + "/")
    await other.click("form.logout button[type=submit]")
    await other.wait_for_url("**/login/")

    status = page.locator("#live-status")
    await expect(status).to_contain_text("You were logged out", timeout=SHOWN_MS)
    link = status.locator("a#live-login")
    await expect(link).to_have_attribute("href", "/login/?next=%2F")
    assert await page.evaluate("window.__cspViolations") == []
    await context.close()
