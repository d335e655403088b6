"""The charts page in a real browser: drawn, refreshed in place by htmx, legible in both themes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from simgateway.server import SimGateway
from tests.browser.conftest import Server, logged_in_page

pytestmark = pytest.mark.slow

KEY = "agent:main:telegram:direct:charts"


async def test_the_charts_draw_refresh_in_place_and_read_in_light_and_dark(
    browser: Browser, server: Server, gateway: SimGateway, tmp_path: Path
) -> None:
    gateway.send_inbound(KEY, "hello")
    page = await logged_in_page(browser, server, "/charts/")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    drawn = page.locator("figure.chart svg")
    for _ in range(100):  # the gateway's row appears once the bridge has connected
        if await drawn.count():
            break
        await page.wait_for_timeout(200)
        await page.reload()
    await expect(drawn).to_have_count(6)
    await expect(page.locator("figure.chart").first).to_contain_text("Flags raised and cleared")

    # htmx swaps the partial in place every 10 s: the page is not reloaded.
    await page.evaluate("window.notReloaded = true")
    async with page.expect_response(lambda r: "/charts/" in r.url, timeout=20_000) as answer:
        pass
    assert (await answer.value).status == 200
    await expect(drawn).to_have_count(6)
    assert await page.evaluate("window.notReloaded") is True

    shots = Path(os.environ.get("RUNBOARD_SCREENSHOT_DIR") or tmp_path)
    colours = {}
    for scheme in ("light", "dark"):
        await page.emulate_media(color_scheme=scheme)
        await page.screenshot(path=str(shots / f"charts-{scheme}.png"), full_page=True)
        colours[scheme] = await page.evaluate(
            "() => [getComputedStyle(document.querySelector('figure.chart svg text')).fill,"
            " getComputedStyle(document.body).backgroundColor]"
        )
    # Labels follow the theme: a dark fill on the light page, a light one on the dark page.
    assert colours["light"] != colours["dark"]
    assert errors == []
