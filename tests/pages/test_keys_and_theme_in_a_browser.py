"""Keyboard navigation, dark mode and flag tooltips, in Debian's Chromium via Playwright.

The pages are served by pytest-django's live server (plain HTTP: the live
socket is part A's and is not needed here). Missing Chromium fails, never skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.pages.support import Stream, ingest
from tests.support.streams import locked_sessions
from tests.support.users import make_user

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 15_000  # an upper bound, never a measurement
DARK_BG, LIGHT_BG = "rgb(15, 18, 24)", "rgb(255, 255, 255)"


@pytest.fixture
def browser(transactional_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    """One Chromium per test, stopped before the database is flushed.

    Playwright's sync API runs its own event loop in this thread while it is up; the
    test's database calls are still plain synchronous ones, so Django's guard is lifted
    for exactly that span.
    """
    assert CHROMIUM.exists(), "Debian's chromium is required: apt-get install chromium"
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()
    monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE")


def logged_in(browser: Browser, live_server: Any, **options: Any) -> BrowserContext:
    user = make_user(f"viewer{User.objects.count()}", "pw")
    client = Client()
    client.force_login(user)
    context = browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    cookie = client.cookies["sessionid"]
    context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": live_server.url}])
    return context


@pytest.fixture
def page(browser: Browser, live_server: Any, transactional_db: None) -> Iterator[Page]:
    ingest(locked_sessions(Stream(), 3, leaked=1))
    context = logged_in(browser, live_server)
    page = context.new_page()
    page.goto(live_server.url + "/")
    yield page
    context.close()


def background(page: Page) -> str:
    return str(page.evaluate("getComputedStyle(document.body).backgroundColor"))


def test_j_and_k_move_the_row_focus_and_enter_opens_the_session(page: Page) -> None:
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    focused = page.evaluate("document.activeElement.querySelector('td.key a').textContent")
    assert focused == "agent:main:telegram:direct:0"
    page.keyboard.press("Enter")
    page.wait_for_url("**/sessions/*/")
    assert page.locator("h1.key").text_content() == "agent:main:telegram:direct:0"


def test_slash_focuses_the_search_and_question_mark_opens_the_help(page: Page) -> None:
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("direct:2")
    page.keyboard.press("Escape")
    page.keyboard.press("?")
    assert page.locator("#keys-help").is_visible()
    page.keyboard.press("Escape")
    assert not page.locator("#keys-help").is_visible()


def test_a_flag_shows_its_why_on_keyboard_focus(page: Page) -> None:
    tip = page.locator(".tip").first
    assert not tip.is_visible()
    page.locator(".flag").first.focus()
    assert tip.is_visible()
    assert "lock" in (tip.text_content() or "")


def test_the_theme_follows_the_system_and_the_toggle_sticks_across_loads(
    browser: Browser, live_server: Any, transactional_db: None
) -> None:
    context = logged_in(browser, live_server, color_scheme="dark")
    page = context.new_page()
    page.goto(live_server.url + "/gateways/")
    assert background(page) == DARK_BG
    page.click("#theme-toggle")
    assert background(page) == LIGHT_BG
    # The stored choice is applied in <head>, before the body first paints.
    page.add_init_script(
        "document.addEventListener('DOMContentLoaded', () => {"
        " window.themeAtFirstParse = document.documentElement.dataset.theme; });"
    )
    page.reload()
    assert page.evaluate("window.themeAtFirstParse") == "light"
    assert background(page) == LIGHT_BG
    context.close()


def test_the_pages_read_without_javascript(
    browser: Browser, live_server: Any, transactional_db: None
) -> None:
    ingest(locked_sessions(Stream(), 2, leaked=1))
    context = logged_in(browser, live_server, java_script_enabled=False)
    page = context.new_page()
    page.goto(live_server.url + "/?q=direct:1")
    assert page.locator("tr[id^=session-]").count() == 1
    page.click("text=agent:main:telegram:direct:1")
    assert page.locator("ol.timeline li").count() >= 1
    context.close()
